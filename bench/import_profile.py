"""Where a function's cold start goes: `python bench/import_profile.py [--runs 5] [--lambda-like] [Function ...]`.

Imports each function's handler (the proxy: its app) in fresh interpreters under `python -X importtime`,
with the environment a Lambda function has (so Powertools' tracer and the X-Ray SDK behave as there),
and prints per function the median import time, wall and CPU, and what it is made of: the self time of
each top-level package and the slowest of our own modules (cumulative), each the least over the runs
(the least is the best estimate on a host that other work slows down). Prints, asserts nothing.

--lambda-like: as on Lambda, Python 3.12 without site-packages, only the function's code and its
requirements, the shared layer and the runtime's boto3 on the path (installed once with pip --target
under .local/lambda-packages). Otherwise this repo's .venv, which holds every dev tool as well.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.stats import parse_importtime  # noqa: E402
from local_stack.template import function_environment, load_template, runs_under_web_adapter  # noqa: E402


def lambda_environment(template: dict, function_id: str) -> dict[str, str]:
    """What the function's environment holds on Lambda, as far as imports can tell."""
    names = {logical_id: logical_id for logical_id in template["Resources"]}
    return {
        **{name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "POWERTOOLS_"))},
        **function_environment(template, function_id, names),
        "AWS_LAMBDA_FUNCTION_NAME": function_id,
        # The X-Ray SDK tells Lambda by this one; elsewhere its recorder builds a centralized sampler with
        # two botocore X-Ray clients at import, which Lambda never pays.
        "LAMBDA_TASK_ROOT": str(REPO / template["Resources"][function_id]["Properties"]["CodeUri"]),
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


PACKAGES = REPO / ".local" / "lambda-packages"


def lambda_python() -> str:
    """A Python 3.12 (the runtime's version): pyenv's (as `make build` uses), or one on PATH."""
    pyenv = sorted(Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")).glob("versions/3.12*/bin/python3.12"))
    found = str(pyenv[-1]) if pyenv else shutil.which("python3.12")  # pyenv's shim may refuse to pick one
    if found is None:
        raise SystemExit("--lambda-like needs a Python 3.12 (Lambda's runtime version): none on PATH or in pyenv")
    return found


def installed(python: str, name: str, requirements: list[str], bytecode: bool) -> Path:
    """`pip install --target` of these requirement lines, once (redone when they change). Without
    `bytecode` as `sam build` lays a layer out: its builder unzips the wheels, so no .pyc is shipped,
    and Lambda's read-only /opt and /var/task mean every cold start compiles what it imports."""
    target = PACKAGES / f"{name}-{'pyc' if bytecode else 'source'}"
    stamp = target / ".requirements"
    wanted = "\n".join(requirements)
    if not stamp.exists() or stamp.read_text() != wanted:
        print(f"  installing {name} for Python 3.12 into {target} ...", flush=True)
        compile_flag = [] if bytecode else ["--no-compile"]
        subprocess.run(
            [python, "-m", "pip", "install", "-q", *compile_flag, "--upgrade", "--target", str(target), *requirements],
            check=True,
        )
        stamp.write_text(wanted)
    return target


def compiled_copy(python: str, source: Path, name: str) -> Path:
    """A copy of our own code with its bytecode compiled ahead (unchecked hashes: valid whatever the
    files' times after unzipping), as a build step could ship it; redone on every run (it is small)."""
    target = PACKAGES / "own-pyc" / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash", str(target)], check=True
    )
    return target


def requirement_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def search_path(function_id: str, folder: Path, python: str | None, bytecode: bool) -> list[str]:
    """The import path of the function: on Lambda /var/task (code + requirements), then /opt/python (the
    layer: our code and its requirements, botocore among them as the X-Ray SDK's), then the runtime's boto3
    (shipped with bytecode). Without a Lambda-like Python: this repo's code on the venv's path."""
    shared = REPO / "layers" / "shared"
    if python is None:
        return [str(folder), str(shared)]
    layer = installed(python, "layer", requirement_lines(shared / "requirements.txt"), bytecode)
    runtime = installed(python, "runtime", ["boto3"], bytecode=True)
    own = requirement_lines(folder / "requirements.txt")
    extra = [str(installed(python, function_id, own, bytecode))] if own else []
    if bytecode:
        folder = compiled_copy(python, folder, function_id)
        shared = compiled_copy(python, shared, "shared")
    return [str(folder), *extra, str(shared), str(layer), str(runtime)]


def profile(
    template: dict, function_id: str, runs: int, python: str | None, bytecode: bool = False
) -> tuple[list[float], list[float], dict[str, float], dict[str, float]]:
    """(wall ms per run, CPU ms per run, least self ms per top-level package, least cumulative ms per own module)."""
    resource = template["Resources"][function_id]
    folder = REPO / resource["Properties"]["CodeUri"]
    module = "app" if runs_under_web_adapter(template, function_id) else "handler"
    env = {
        **lambda_environment(template, function_id),
        "PYTHONPATH": ":".join(search_path(function_id, folder, python, bytecode)),
        "PYTHONDONTWRITEBYTECODE": "1",  # Lambda's code directories are read-only
    }
    code = (
        "import time; cpu = time.process_time(); wall = time.perf_counter(); "
        f"import {module}; print(time.perf_counter() - wall, time.process_time() - cpu)"
    )
    command = [python, "-S"] if python else [sys.executable]
    totals: list[float] = []
    cpu: list[float] = []
    packages: dict[str, list[float]] = defaultdict(list)
    own: dict[str, list[float]] = defaultdict(list)
    for _ in range(runs):
        out = subprocess.run(
            [*command, "-X", "importtime", "-c", code],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            raise RuntimeError(f"{function_id}: {out.stderr.strip().splitlines()[-1]}")
        entries = parse_importtime(out.stderr)
        wall_seconds, cpu_seconds = (float(x) for x in out.stdout.split())
        totals.append(wall_seconds * 1000)
        cpu.append(cpu_seconds * 1000)
        per_package: dict[str, float] = defaultdict(float)
        for entry in entries:
            per_package[entry.module.split(".")[0]] += entry.self_us / 1000
            if entry.module.startswith("llm_platform"):
                own[entry.module].append(entry.cumulative_us / 1000)
        for package, milliseconds in per_package.items():
            packages[package].append(milliseconds)
    return (
        totals,
        cpu,
        {name: min(values) for name, values in packages.items()},
        {name: min(values) for name, values in own.items()},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("functions", nargs="*", help="logical ids (default: every function)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--top", type=int, default=8, help="packages and own modules shown per function")
    parser.add_argument("--lambda-like", action="store_true", help="Python 3.12, only what Lambda has on the path")
    parser.add_argument(
        "--bytecode",
        action="store_true",
        help="with --lambda-like: the layer and our code shipped with compiled bytecode (not what sam build does)",
    )
    args = parser.parse_args()
    template = load_template(REPO / "template.yaml")
    ids = [name if name in template["Resources"] else f"{name}Function" for name in args.functions] or sorted(
        logical_id
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    )
    python = lambda_python() if args.lambda_like else None
    where = (
        f"Python 3.12, Lambda's path only, {'with' if args.bytecode else 'no'} bytecode shipped"
        if python
        else sys.executable
    )
    print(f"Cold import per function ({where}), {args.runs} fresh interpreters each:")
    summary = []
    for function_id in ids:
        load = os.getloadavg()[0]
        totals, cpu, packages, own = profile(template, function_id, args.runs, python, args.bytecode)
        summary.append((function_id, statistics.median(totals), statistics.median(cpu)))
        biggest = sorted(packages.items(), key=lambda item: -item[1])[: args.top]
        print(
            f"  {function_id}: wall median {statistics.median(totals):.0f} ms (best {min(totals):.0f}), "
            f"CPU median {statistics.median(cpu):.0f} ms (best {min(cpu):.0f}); load average {load:.2f}"
        )
        print("    self time by package: " + ", ".join(f"{name} {ms:.0f}" for name, ms in biggest))
        slowest = sorted(own.items(), key=lambda item: -item[1])[: args.top]
        print("    own modules, cumulative: " + ", ".join(f"{name} {ms:.0f}" for name, ms in slowest))
    print(
        "  summary (median wall / CPU ms): "
        + ", ".join(f"{f.removesuffix('Function')} {w:.0f}/{c:.0f}" for f, w, c in summary)
    )


if __name__ == "__main__":
    main()
