"""``crm run``: execute the stage notebooks in order, in one process, and publish the run.

A run is built in a hidden temporary folder next to its final place and moved there (one rename)
when it ends, whether it succeeded or failed, so a half-written run is never visible. Each notebook
is executed with papermill's Python API (papermill and nbformat are imported once, not per stage),
rendered to HTML with code, prompts and parameter cells hidden, and recorded in ``manifest.json``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable, TextIO

from crmlib import report
from crmlib.params import load_params

__all__ = ["STAGES", "RunResult", "run_pipeline", "discover_notebooks", "NOTEBOOKS_DIR"]

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"

# stage name -> (input kinds it needs, any of; human title)
STAGES: dict[str, tuple[tuple[str, ...], str]] = {
    "ingest": (("orders",), "Ingest and identity resolution"),
    "segmentation": (("orders",), "Segmentation and customer lifetime value"),
    "roi": (("touchpoints", "spend"), "ROI and attribution"),
    "ab_tests": (("experiments",), "A/B and holdout experiments"),
}

_PACKAGES = ("crmlib", "ibis-framework", "duckdb", "pandas", "numpy", "scipy", "statsmodels",
             "scikit-learn", "splink", "papermill", "nbconvert", "phonenumbers", "matplotlib")


@dataclass
class StageRecord:
    """What happened to one stage in a run (one entry of ``manifest.json``'s ``stages``)."""

    stage: str
    notebook: str | None
    status: str = "pending"  # ok | failed | skipped
    reason: str | None = None
    duration_s: float | None = None
    html: str | None = None
    error: str | None = None


@dataclass
class RunResult:
    """The outcome of :func:`run_pipeline`: the final run directory and each stage's record."""

    run_id: str
    run_dir: Path
    stages: list[StageRecord] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.status != "failed" for s in self.stages)

    @property
    def failed_stage(self) -> str | None:
        return next((s.stage for s in self.stages if s.status == "failed"), None)


def discover_notebooks(notebooks_dir: Path = NOTEBOOKS_DIR) -> dict[str, Path]:
    """Map stage name -> notebook for files named ``NN_<stage>.ipynb``, in filename order."""
    found = {}
    for nb in sorted(Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb")):
        found[nb.stem[3:]] = nb
    return found


def _make_run_id(params: dict, now: dt.datetime) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", params["run"]["name"])
    return f"{name}_{now.strftime('%Y%m%dT%H%M%SZ')}"


def _fingerprint(path: str) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return {"path": path, "size": os.path.getsize(path), "sha256": digest.hexdigest()}


def _package_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _table_row_counts(tables_dir: Path) -> dict:
    import pyarrow.parquet as pq

    counts = {}
    for p in sorted(tables_dir.glob("*.parquet")):
        try:
            counts[p.stem] = pq.ParquetFile(p).metadata.num_rows
        except Exception:  # a stage may leave a partial file behind when it fails
            counts[p.stem] = None
    return counts


def _latest_ok_run(output_dir: Path, run_name: str) -> Path | None:
    for manifest in sorted(output_dir.glob("*/manifest.json"), reverse=True):
        try:
            m = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if m.get("run_name") == run_name and m.get("status") == "ok":
            return manifest.parent
    return None


def run_pipeline(
    params_path: str | Path,
    *,
    run_id: str | None = None,
    only: list[str] | None = None,
    notebooks_dir: Path = NOTEBOOKS_DIR,
    kernel_name: str = "python3",
    execution_timeout: int | None = None,
    out: TextIO | None = None,
) -> RunResult:
    """Run the stage notebooks on ``params_path`` and publish the run directory.

    Parameters
    ----------
    params_path : str or Path
        The params YAML (validated first; a :class:`crmlib.params.ParamsError` stops everything).
    run_id : str, optional
        Default ``<run name>_<UTC timestamp>``.
    only : list of str, optional
        Stages to run; the others are skipped. Tables of skipped upstream stages are copied from the
        newest successful run of the same params name, recorded as ``based_on`` in the manifest.
    notebooks_dir : Path
        Folder of ``NN_<stage>.ipynb`` notebooks.
    kernel_name : str
        Jupyter kernel; ``python3`` resolves to the running interpreter.
    execution_timeout : int, optional
        Per-cell timeout in seconds (papermill's ``execution_timeout``).
    out : text stream, optional
        Where progress lines go (default stdout). The last line printed is the run directory.

    Returns
    -------
    RunResult
    """
    out = out or sys.stdout
    params = load_params(params_path)
    started = dt.datetime.now(dt.timezone.utc)
    run_id = run_id or _make_run_id(params, started)
    output_dir = Path(params["run"]["output_dir"])
    output_dir.mkdir(parents=True, exist_ok=True)
    final_dir = output_dir / run_id
    if final_dir.exists():
        raise FileExistsError(f"run directory already exists: {final_dir} (choose another --run-id)")
    work_dir = output_dir / f".tmp-{run_id}"
    if work_dir.exists():
        shutil.rmtree(work_dir)
    (work_dir / "tables").mkdir(parents=True)

    unknown = sorted(set(only or []) - set(STAGES))
    if unknown:
        raise ValueError(f"unknown stage(s) {', '.join(unknown)}; stages are {', '.join(STAGES)}")
    notebooks = discover_notebooks(notebooks_dir)
    kinds = {s["kind"] for s in params["sources"]}
    result = RunResult(run_id=run_id, run_dir=final_dir)
    manifest: dict = {
        "run_id": run_id,
        "run_name": params["run"]["name"],
        "status": "running",
        "params_path": params["_path"],
        "params": {k: v for k, v in params.items() if not k.startswith("_")},
        "started": started.isoformat(),
        "inputs": [_fingerprint(s["path"]) | {"source": s["name"], "kind": s["kind"]} for s in params["sources"]],
        "packages": _package_versions(),
        "git_sha": _git_sha(),
        "python": sys.executable,
    }

    based_on = None
    if only:
        upstream_skipped = [s for s in STAGES if s not in only]
        if upstream_skipped:
            based_on = _latest_ok_run(output_dir, params["run"]["name"])
            if based_on is not None:
                shutil.copytree(based_on / "tables", work_dir / "tables", dirs_exist_ok=True)
    manifest["based_on"] = based_on.name if based_on else None

    import papermill as pm  # imported here: it costs seconds, and params errors must not wait for it

    failed = False
    for number, (stage, (needs, title)) in enumerate(STAGES.items(), start=1):
        nb = notebooks.get(stage)
        rec = StageRecord(stage=stage, notebook=nb.name if nb else None)
        result.stages.append(rec)
        if failed:
            rec.status, rec.reason = "skipped", "an earlier stage failed"
        elif only and stage not in only:
            rec.status, rec.reason = "skipped", "not selected with --only"
        elif nb is None:
            rec.status, rec.reason = "skipped", f"no notebook for this stage in {notebooks_dir}"
        elif not kinds.intersection(needs):
            rec.status, rec.reason = "skipped", f"no input of kind {' or '.join(needs)} in the params"
        if rec.status == "skipped":
            print(f"[{number}/{len(STAGES)}] {stage}: skipped ({rec.reason})", file=out, flush=True)
            continue
        executed = work_dir / nb.name
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(
                str(nb), str(executed),
                parameters={"params_path": params["_path"], "run_dir": str(work_dir)},
                kernel_name=kernel_name, cwd=str(nb.parent), progress_bar=False, log_output=False,
                execution_timeout=execution_timeout, report_mode=True,
                # the kernel's own start-up warnings (TCP on localhost, no encryption) are noise in a
                # scheduler's log; errors still show
                extra_arguments=["--IPKernelApp.log_level=ERROR"],
            )
            rec.status = "ok"
        except Exception as exc:  # PapermillExecutionError, timeouts, dead kernels: all mean "failed"
            rec.status, failed = "failed", True
            rec.error = _short_error(exc)
            rec.reason = f"a cell raised {rec.error}"
        rec.duration_s = round(time.perf_counter() - t0, 2)
        if executed.exists():
            html = executed.with_suffix(".html")
            report.render_notebook(executed, html, title=f"{title} - {run_id}")
            rec.html = html.name
        print(f"[{number}/{len(STAGES)}] {stage}: {rec.status} in {rec.duration_s:.1f} s"
              + (f" ({rec.reason})" if rec.status == "failed" else ""), file=out, flush=True)

    ended = dt.datetime.now(dt.timezone.utc)
    manifest.update({
        "status": "failed" if failed else "ok",
        "failed_stage": result.failed_stage,
        "ended": ended.isoformat(),
        "duration_s": round((ended - started).total_seconds(), 2),
        "stages": [vars(s) for s in result.stages],
        "row_counts": _table_row_counts(work_dir / "tables"),
    })
    quality = work_dir / "tables" / "data_quality.json"
    if quality.exists():
        manifest["data_quality"] = json.loads(quality.read_text(encoding="utf-8")).get("sources")
    (work_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=str),
                                            encoding="utf-8")
    report.write_run_index(work_dir, manifest)
    for scratch in (".duckdb_tmp", ".ingest_tmp"):  # engine spill files; transcoded sources (raw PII)
        shutil.rmtree(work_dir / scratch, ignore_errors=True)
    os.rename(work_dir, final_dir)
    report.write_reports_index(output_dir)
    print(f"report: {final_dir / 'index.html'}", file=out, flush=True)
    print(str(final_dir), file=out, flush=True)
    return result


def _short_error(exc: BaseException) -> str:
    ename = getattr(exc, "ename", None) or type(exc).__name__
    evalue = getattr(exc, "evalue", None) or str(exc)
    first = evalue.strip().splitlines()[0] if evalue.strip() else ""
    return f"{ename}: {first}"[:500]
