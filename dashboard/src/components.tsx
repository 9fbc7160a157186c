import type { ButtonHTMLAttributes, ComponentChildren } from "preact";
import { useCallback, useEffect, useId, useRef, useState } from "preact/hooks";

import { ApiError, api } from "./api";

// ------------------------------------------------------------------ loading data

export interface Resource<T> {
  data: T | undefined;
  error: ApiError | undefined;
  loading: boolean;
  reload: () => Promise<void>;
}

/** Loads on mount and whenever `deps` change; `reload()` loads again keeping the shown data meanwhile. */
export function useResource<T>(load: () => Promise<T>, deps: unknown[] = []): Resource<T> {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<ApiError>();
  const [loading, setLoading] = useState(true);
  const generation = useRef(0);
  const reload = useCallback(async () => {
    const mine = ++generation.current;
    setLoading(true);
    try {
      const value = await load();
      if (mine === generation.current) {
        setData(value);
        setError(undefined);
      }
    } catch (caught) {
      if (mine === generation.current) setError(asApiError(caught));
    } finally {
      if (mine === generation.current) setLoading(false);
    }
  }, deps);
  useEffect(() => {
    void reload();
  }, [reload]);
  return { data, error, loading, reload };
}

export function asApiError(caught: unknown): ApiError {
  if (caught instanceof ApiError) return caught;
  const message = caught instanceof Error ? caught.message : String(caught);
  return new ApiError(0, "client_error", message || "Something went wrong in the dashboard.");
}

/** Runs an action with a busy flag and its error kept for display; returns the result or undefined. */
export function useAction() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError>();
  const run = useCallback(async <T,>(action: () => Promise<T>): Promise<T | undefined> => {
    setBusy(true);
    setError(undefined);
    try {
      return await action();
    } catch (caught) {
      setError(asApiError(caught));
      return undefined;
    } finally {
      setBusy(false);
    }
  }, []);
  return { busy, error, run, clearError: () => setError(undefined) };
}

// ------------------------------------------------------------------ feedback

export function ErrorNotice({ error, title }: { error: ApiError | undefined; title?: string }) {
  if (!error) return null;
  return (
    <div class="notice notice-error" role="alert">
      <strong>{title ?? "That did not work."}</strong> {error.message}
      {error.code && error.code !== "client_error" ? <span class="notice-code"> ({error.code})</span> : null}
    </div>
  );
}

export function Notice({ kind = "info", children }: { kind?: "info" | "success" | "warning"; children: ComponentChildren }) {
  return (
    <div class={`notice notice-${kind}`} role="status">
      {children}
    </div>
  );
}

export function Loading({ label = "Loading…" }: { label?: string }) {
  return (
    <div class="loading" role="status">
      <span class="spinner" aria-hidden="true" />
      {label}
    </div>
  );
}

/** The standard body of a section that loads: spinner first, then the error in words, then the content. */
export function Loaded<T>({ resource, label, children }: { resource: Resource<T>; label: string; children: (data: T) => ComponentChildren }) {
  if (resource.data === undefined) {
    if (resource.error) return <ErrorNotice error={resource.error} title={`Could not load ${label}.`} />;
    return <Loading label={`Loading ${label}…`} />;
  }
  return (
    <>
      {resource.error ? <ErrorNotice error={resource.error} title={`Could not refresh ${label}.`} /> : null}
      {children(resource.data)}
    </>
  );
}

// ------------------------------------------------------------------ controls

type ButtonProps = Omit<ButtonHTMLAttributes<HTMLButtonElement>, "type"> & {
  variant?: "primary" | "secondary" | "danger" | "ghost";
  busy?: boolean;
  small?: boolean;
  type?: "button" | "submit";
  disabled?: boolean;
};

export function Button({ variant = "secondary", busy, small, type = "button", disabled, children, class: extra, ...rest }: ButtonProps) {
  return (
    <button
      type={type}
      class={`btn btn-${variant}${small ? " btn-small" : ""}${extra ? ` ${extra}` : ""}`}
      disabled={disabled || busy}
      aria-busy={busy ? "true" : undefined}
      {...rest}
    >
      {busy ? <span class="spinner spinner-inline" aria-hidden="true" /> : null}
      {children}
    </button>
  );
}

export function Field({
  label,
  hint,
  children,
  id,
}: {
  label: string;
  hint?: ComponentChildren;
  id: string;
  children: ComponentChildren;
}) {
  return (
    <div class="field">
      <label for={id}>{label}</label>
      {children}
      {hint ? (
        <p class="hint" id={`${id}-hint`}>
          {hint}
        </p>
      ) : null}
    </div>
  );
}

export function CopyButton({ text, label = "Copy", describedBy }: { text: string; label?: string; describedBy?: string }) {
  const [state, setState] = useState<"idle" | "copied" | "failed">("idle");
  useEffect(() => {
    if (state === "idle") return;
    const timer = window.setTimeout(() => setState("idle"), 2500);
    return () => window.clearTimeout(timer);
  }, [state]);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      setState("copied");
    } catch {
      setState("failed");
    }
  };
  return (
    <>
      <Button small onClick={copy} aria-describedby={describedBy}>
        {label}
      </Button>
      <span class="copy-state" role="status">
        {state === "copied" ? "Copied to the clipboard" : state === "failed" ? "Could not copy: select the text and copy it" : ""}
      </span>
    </>
  );
}

/** A secret shown once, right after it was made: with a Copy button, gone when the dialog closes. */
export function SecretOnce({ label, secret, note }: { label: string; secret: string; note?: ComponentChildren }) {
  const id = useId();
  return (
    <div class="secret">
      <Notice kind="warning">
        <strong>Copy it now.</strong> This is the only time the secret is shown; we keep only its hash.
      </Notice>
      <label for={id}>{label}</label>
      <div class="secret-row">
        <input id={id} class="mono" readOnly value={secret} onFocus={(e) => e.currentTarget.select()} />
        <CopyButton text={secret} />
      </div>
      {note ? <p class="hint">{note}</p> : null}
    </div>
  );
}

// ------------------------------------------------------------------ dialogs

/** A modal dialog (native <dialog>: focus trapped, Escape closes, focus returns to the opener). */
export function Dialog({
  title,
  open,
  onClose,
  children,
  wide,
}: {
  title: string;
  open: boolean;
  onClose: () => void;
  children: ComponentChildren;
  wide?: boolean;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const titleId = useId();
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    if (open && !dialog.open) dialog.showModal();
    if (!open && dialog.open) dialog.close();
  }, [open]);
  return (
    <dialog
      ref={ref}
      class={`dialog${wide ? " dialog-wide" : ""}`}
      aria-labelledby={titleId}
      onClose={() => open && onClose()}
      onCancel={(event) => {
        event.preventDefault();
        onClose();
      }}
    >
      {open ? (
        <div class="dialog-body">
          <header class="dialog-header">
            <h2 id={titleId}>{title}</h2>
            <button type="button" class="icon-btn" aria-label="Close" onClick={onClose}>
              <span aria-hidden="true">×</span>
            </button>
          </header>
          {children}
        </div>
      ) : null}
    </dialog>
  );
}

export function ConfirmDialog({
  title,
  open,
  onClose,
  onConfirm,
  confirmLabel,
  danger,
  children,
  busy,
  error,
}: {
  title: string;
  open: boolean;
  onClose: () => void;
  onConfirm: () => void;
  confirmLabel: string;
  danger?: boolean;
  children: ComponentChildren;
  busy?: boolean;
  error?: ApiError;
}) {
  return (
    <Dialog title={title} open={open} onClose={onClose}>
      <div class="dialog-content">{children}</div>
      <ErrorNotice error={error} />
      <footer class="dialog-actions">
        <Button onClick={onClose}>Keep it</Button>
        <Button variant={danger ? "danger" : "primary"} busy={busy} onClick={onConfirm}>
          {confirmLabel}
        </Button>
      </footer>
    </Dialog>
  );
}

// ------------------------------------------------------------------ layout bits

export function PageHeader({ title, description, actions }: { title: string; description?: ComponentChildren; actions?: ComponentChildren }) {
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    // A new page: move focus to its heading, so keyboard and screen-reader users start there.
    heading.current?.focus({ preventScroll: true });
    document.title = `${title} · Inference Platform`;
  }, [title]);
  return (
    <header class="page-header">
      <div>
        <h1 ref={heading} tabIndex={-1}>
          {title}
        </h1>
        {description ? <p class="page-description">{description}</p> : null}
      </div>
      {actions ? <div class="page-actions">{actions}</div> : null}
    </header>
  );
}

export function Card({ title, children, actions, class: extra, labelledBy }: { title?: string; children: ComponentChildren; actions?: ComponentChildren; class?: string; labelledBy?: string }) {
  const id = useId();
  return (
    <section class={`card${extra ? ` ${extra}` : ""}`} aria-labelledby={title ? (labelledBy ?? id) : undefined}>
      {title ? (
        <header class="card-header">
          <h2 id={labelledBy ?? id}>{title}</h2>
          {actions ? <div class="card-actions">{actions}</div> : null}
        </header>
      ) : null}
      {children}
    </section>
  );
}

export function Badge({ tone, children }: { tone: "green" | "gray" | "amber" | "red" | "blue"; children: ComponentChildren }) {
  return <span class={`badge badge-${tone}`}>{children}</span>;
}

export function StatusBadge({ status }: { status: string }) {
  const tone = status === "active" ? "green" : status === "disabled" || status === "past_due" ? "amber" : status === "revoked" || status === "expired" ? "red" : "gray";
  const words: Record<string, string> = { active: "Active", disabled: "Disabled", revoked: "Revoked", past_due: "Past due", expired: "Expired" };
  return <Badge tone={tone}>{words[status] ?? status}</Badge>;
}

export function Meter({ value, label, valueText }: { value: number; label: string; valueText: string }) {
  const percent = Math.round(value * 100);
  return (
    <div
      class={`meter${value >= 0.9 ? " meter-high" : value >= 0.6 ? " meter-mid" : ""}`}
      role="meter"
      aria-label={label}
      aria-valuemin={0}
      aria-valuemax={100}
      aria-valuenow={percent}
      aria-valuetext={valueText}
    >
      <div class="meter-fill" style={{ width: `${Math.max(value > 0 ? 1.5 : 0, percent)}%` }} />
    </div>
  );
}

export function EmptyState({ title, children }: { title: string; children?: ComponentChildren }) {
  return (
    <div class="empty">
      <p class="empty-title">{title}</p>
      {children ? <div class="empty-body">{children}</div> : null}
    </div>
  );
}

/** A dialog form's actions: Cancel, and the submit button (busy while the request runs). */
export function FormActions({ onCancel, submitLabel, busy }: { onCancel: () => void; submitLabel: string; busy: boolean }) {
  return (
    <footer class="dialog-actions">
      <Button onClick={onCancel}>Cancel</Button>
      <Button type="submit" variant="primary" busy={busy}>
        {submitLabel}
      </Button>
    </footer>
  );
}

/** The one action once a secret has been shown: Done. */
export function DoneActions({ onDone }: { onDone: () => void }) {
  return (
    <footer class="dialog-actions">
      <Button variant="primary" onClick={onDone}>
        Done
      </Button>
    </footer>
  );
}

/** Delete a key (API or management) by its DELETE route, after confirmation. */
export function DeleteKeyDialog({
  apiKey,
  path,
  consequence,
  onClose,
  onDeleted,
}: {
  apiKey: { id: string; name: string; prefix: string };
  path: string;
  consequence: string;
  onClose: () => void;
  onDeleted: () => void;
}) {
  const { busy, error, run } = useAction();
  const confirm = async () => {
    const result = await run(() => api.del(`${path}/${encodeURIComponent(apiKey.id)}`));
    if (result !== undefined) onDeleted();
  };
  return (
    <ConfirmDialog title={`Delete ${apiKey.name}?`} open onClose={onClose} onConfirm={confirm} confirmLabel="Delete key" danger busy={busy} error={error}>
      <p>
        Requests with <code>{apiKey.prefix}…</code> are refused from now on. {consequence}
      </p>
    </ConfirmDialog>
  );
}

/** A column heading: its text, or { label, num } for a right-aligned number column, { label, hidden } for a
 * column named for screen readers only (row actions). */
export type Column = string | { label: string; num?: boolean; hidden?: boolean };

/** The dashboard's one table: scrolls sideways on a phone, captioned for screen readers; children are the rows. */
export function DataTable({
  caption,
  columns,
  nowrap,
  note,
  children,
}: {
  caption: string;
  columns: Column[];
  nowrap?: boolean;
  note?: ComponentChildren;
  children: ComponentChildren;
}) {
  return (
    <div class="table-wrap">
      <table class={nowrap ? "table table-nowrap" : "table"}>
        <caption class="sr-only">{caption}</caption>
        <thead>
          <tr>
            {columns.map((column) => {
              const { label, num, hidden } = typeof column === "string" ? { label: column } : column;
              return (
                <th scope="col" key={label} class={num ? "num" : undefined}>
                  {hidden ? <span class="sr-only">{label}</span> : label}
                </th>
              );
            })}
          </tr>
        </thead>
        <tbody>{children}</tbody>
      </table>
      {note}
    </div>
  );
}
