import { useId } from "preact/hooks";

export interface Point {
  label: string; // the x-axis label ("Mar 3")
  value: number;
  display: string; // the value in words ("$0.42", "12 requests")
}

/** The axis top: four equal steps of a round size (1, 2, 2.5 or 5 times a power of ten; whole steps for counts). */
function axisMax(value: number, whole: boolean): number {
  if (value <= 0) return whole ? 4 : 1;
  const rough = value / 4;
  const power = 10 ** Math.floor(Math.log10(rough));
  const steps = whole ? [1, 2, 5, 10] : [1, 2, 2.5, 5, 10];
  let step = (steps.find((candidate) => candidate * power >= rough) ?? 10) * power;
  if (whole) step = Math.max(1, Math.round(step));
  return step * 4;
}

const WIDTH = 520;
const HEIGHT = 220;
const PAD = { top: 12, right: 8, bottom: 30, left: 74 };

/** A bar chart in SVG: labelled for assistive technology, each bar with its value, and the data as a table. */
export function BarChart({
  title,
  points,
  formatTick,
  tone = "indigo",
  whole = false,
}: {
  title: string;
  points: Point[];
  formatTick: (value: number) => string;
  tone?: "indigo" | "teal";
  whole?: boolean;
}) {
  const id = useId();
  const max = axisMax(Math.max(0, ...points.map((point) => point.value)), whole);
  const plotWidth = WIDTH - PAD.left - PAD.right;
  const plotHeight = HEIGHT - PAD.top - PAD.bottom;
  const slot = plotWidth / Math.max(1, points.length);
  const barWidth = Math.max(2, Math.min(36, slot * 0.62));
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((fraction) => fraction * max);
  const labelEvery = Math.ceil(points.length / 10);
  const total = points.reduce((sum, point) => sum + point.value, 0);
  return (
    <figure class="chart">
      <figcaption id={`${id}-title`} class="chart-title">
        {title}
      </figcaption>
      <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} role="img" aria-labelledby={`${id}-title ${id}-desc`} class={`chart-svg chart-${tone}`}>
        <desc id={`${id}-desc`}>{total === 0 ? "No activity in this period." : points.filter((point) => point.value > 0).map((point) => `${point.label}: ${point.display}`).join("; ")}</desc>
        {ticks.map((tick) => {
          const y = PAD.top + plotHeight - (tick / max) * plotHeight;
          return (
            <g key={tick} class="chart-grid">
              <line x1={PAD.left} x2={WIDTH - PAD.right} y1={y} y2={y} />
              <text x={PAD.left - 8} y={y + 4} text-anchor="end">
                {formatTick(tick)}
              </text>
            </g>
          );
        })}
        {points.map((point, index) => {
          const height = (point.value / max) * plotHeight;
          const x = PAD.left + index * slot + (slot - barWidth) / 2;
          return (
            <g key={point.label} class="chart-bar">
              <rect x={x} y={PAD.top + plotHeight - height} width={barWidth} height={Math.max(0, height)} rx={Math.min(4, barWidth / 4)}>
                <title>{`${point.label}: ${point.display}`}</title>
              </rect>
              {index % labelEvery === 0 ? (
                <text x={x + barWidth / 2} y={HEIGHT - 8} text-anchor="middle" class="chart-axis">
                  {point.label}
                </text>
              ) : null}
            </g>
          );
        })}
        <line class="chart-baseline" x1={PAD.left} x2={WIDTH - PAD.right} y1={PAD.top + plotHeight} y2={PAD.top + plotHeight} />
      </svg>
      <details class="chart-data">
        <summary>{title}: the numbers</summary>
        <table class="table table-compact">
          <thead>
            <tr>
              <th scope="col">Day</th>
              <th scope="col" class="num">
                Value
              </th>
            </tr>
          </thead>
          <tbody>
            {points.map((point) => (
              <tr key={point.label}>
                <th scope="row">{point.label}</th>
                <td class="num">{point.display}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </details>
    </figure>
  );
}
