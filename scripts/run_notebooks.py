#!/usr/bin/env python3
"""Headless runner for the analyst notebooks.

Produces the outputs the notebooks read, then executes every notebook on them:

    python3 scripts/run_notebooks.py --bin PATH_TO_LANEWATCH --out DIR

1. ``BIN run --config pipelines/sample.toml --out DIR/runs --as-of NIGHT-1`` (the previous
   night), then ``BIN run --config pipelines/sample.toml --out DIR/runs`` (the config's night),
   so the second night has a previous run (recovered.parquet, first_alerted_on);
2. ``BIN backtest --config pipelines/backtest.toml --out DIR/backtest``;
3. executes notebooks/0*.ipynb in name order with nbclient (a kernel running this interpreter, 600 s per cell), in
   the repository root, with LANEWATCH_SAMPLE_DIR, LANEWATCH_RUN_DIR, LANEWATCH_RUNS_DIR and
   LANEWATCH_BACKTEST_DIR pointing at the outputs above. Executed copies go to
   DIR/executed/<name>.ipynb; the notebooks in the repository are never written.

Exits 1 if a command or a notebook cell fails (naming the command or the cell), 2 on usage errors.
Only uses the packages in notebooks/requirements.txt.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The night is the one pipelines/sample.toml runs; the night before gives it a previous run.
NIGHT = tomllib.loads((REPO / "pipelines" / "sample.toml").read_text())["pipeline"]["as_of"]
PREVIOUS_NIGHT = (datetime.date.fromisoformat(NIGHT) - datetime.timedelta(days=1)).isoformat()
CELL_TIMEOUT_S = 600


def log(msg: str) -> None:
    print(msg, flush=True)


def resolve_bin(value: str) -> Path:
    """The lanewatch binary as an absolute path (commands run from the repository root)."""
    if os.sep in value or (os.altsep and os.altsep in value):
        path = Path(value).expanduser().resolve()
    else:
        found = shutil.which(value)
        path = Path(found).resolve() if found else Path(value).resolve()
    if not path.is_file() or not os.access(path, os.X_OK):
        raise SystemExit(f"run_notebooks: --bin {value}: not an executable file")
    return path


def run_command(args: list[str]) -> None:
    """Runs one lanewatch command from the repository root; exits 1 if it fails."""
    shown = " ".join(str(a) for a in args)
    log(f"$ {shown}")
    started = time.monotonic()
    proc = subprocess.run(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        log(f"FAILED (exit {proc.returncode}, {elapsed:.1f} s): {shown}")
        if proc.stdout.strip():
            log("--- stdout ---\n" + proc.stdout.rstrip())
        if proc.stderr.strip():
            log("--- stderr (last 40 lines) ---\n" + "\n".join(proc.stderr.rstrip().splitlines()[-40:]))
        sys.exit(1)
    log(f"  ok ({elapsed:.1f} s)")


def ensure_kernel(scratch: Path) -> str:
    """A kernelspec that runs this very interpreter (so the notebooks see the packages the runner
    was started with, e.g. a virtual environment's), written under `scratch` and put first on
    JUPYTER_PATH; a user's own "python3" kernel pointing elsewhere cannot shadow it."""
    import json

    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    name = "lanewatch-runner"
    spec_dir = scratch / "jupyter" / "kernels" / name
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python ({sys.executable})",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        [str(scratch / "jupyter")] + [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p]
    )
    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        log(f"FAILED: the '{name}' kernelspec written to {spec_dir} is not found")
        sys.exit(1)
    return name


def failed_cell(nb) -> tuple[int, object] | None:
    """The first code cell holding an error output: (index, cell)."""
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return index, cell
    return None


def execute_notebook(path: Path, executed_dir: Path, env: dict[str, str], kernel: str) -> bool:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name=kernel,
        resources={"metadata": {"path": str(REPO)}},
    )
    started = time.monotonic()
    error: BaseException | None = None
    try:
        client.execute(cwd=str(REPO), env=env)
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
        error = exc
    except Exception as exc:  # kernel start-up problems and the like
        error = exc
    elapsed = time.monotonic() - started

    executed_dir.mkdir(parents=True, exist_ok=True)
    out_path = executed_dir / path.name
    nbformat.write(nb, out_path)

    if error is None:
        log(f"ok      {path.name:<42} {elapsed:7.1f} s   -> {out_path}")
        return True

    log(f"FAILED  {path.name:<42} {elapsed:7.1f} s   -> {out_path}")
    where = failed_cell(nb)
    if where is not None:
        index, cell = where
        code_number = sum(1 for c in nb.cells[: index + 1] if c.get("cell_type") == "code")
        first_line = next((line for line in cell.source.splitlines() if line.strip()), "")
        log(f"  failing cell: #{index} (code cell {code_number}), starting: {first_line[:100]}")
        for output in cell.outputs:
            if output.get("output_type") == "error":
                log(f"  {output.get('ename')}: {output.get('evalue')}")
    elif isinstance(error, CellTimeoutError):
        log(f"  a cell ran longer than {CELL_TIMEOUT_S} s: {str(error).splitlines()[0] if str(error) else ''}")
    else:
        log(f"  {type(error).__name__}: {str(error).strip()[:2000]}")
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", required=True, help="path to the lanewatch binary")
    parser.add_argument("--out", required=True, help="folder for runs/, backtest/ and executed/")
    args = parser.parse_args()

    binary = resolve_bin(args.bin)
    out = Path(args.out).expanduser().resolve()
    runs_dir = out / "runs"
    backtest_dir = out / "backtest"
    executed_dir = out / "executed"
    run_dir = runs_dir / f"as_of={NIGHT}"
    out.mkdir(parents=True, exist_ok=True)

    notebooks = sorted((REPO / "notebooks").glob("0*.ipynb"), key=lambda p: p.name)
    if not notebooks:
        log(f"FAILED: no notebooks matching {REPO / 'notebooks' / '0*.ipynb'}")
        return 1

    log(f"repository: {REPO}")
    log(f"outputs:    {out}")
    run_command([str(binary), "run", "--config", "pipelines/sample.toml", "--out", str(runs_dir), "--as-of", PREVIOUS_NIGHT])
    run_command([str(binary), "run", "--config", "pipelines/sample.toml", "--out", str(runs_dir)])
    if not (run_dir / "_SUCCESS").is_file():
        log(f"FAILED: the run did not write {run_dir}/_SUCCESS (does pipelines/sample.toml still set as_of = {NIGHT}?)")
        return 1
    run_command([str(binary), "backtest", "--config", "pipelines/backtest.toml", "--out", str(backtest_dir)])

    kernel = ensure_kernel(out)
    env = dict(os.environ)
    env.update(
        {
            "LANEWATCH_SAMPLE_DIR": str(REPO / "sample_data"),
            "LANEWATCH_RUN_DIR": str(run_dir),
            "LANEWATCH_RUNS_DIR": str(runs_dir),
            "LANEWATCH_BACKTEST_DIR": str(backtest_dir),
        }
    )

    log(f"executing {len(notebooks)} notebooks (kernel {kernel}, timeout {CELL_TIMEOUT_S} s per cell)")
    results = []
    for path in notebooks:
        results.append((path.name, execute_notebook(path, executed_dir, env, kernel)))

    failed = [name for name, ok in results if not ok]
    if failed:
        log(f"{len(failed)} of {len(results)} notebooks failed: {', '.join(failed)}")
        return 1
    log(f"all {len(results)} notebooks ran; executed copies in {executed_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
