"""``crm run``: execute the stage notebooks in order, in one process, and publish the run.

A run is built in a hidden temporary folder (``<output_dir>/.tmp-<run id>``) next to its final place and
moved there (one rename) when it ends, whether it succeeded or failed, so a half-written run is never
visible. Each notebook is executed with papermill's Python API (papermill and nbformat are imported
once, not per stage), rendered to HTML with code, prompts and parameter cells hidden, and recorded in
``manifest.json``.

Operations
----------
* **One run at a time per output folder.** The runner holds an exclusive ``flock`` on
  ``<output_dir>/.crm-run.lock`` for the whole run; a second run on the same folder is refused at once
  (:class:`RunLocked`, exit code 3) and touches nothing.
* **No raw input under the output folder.** The kernels' engines keep their DuckDB databases, spill files
  and transcoded inputs in a private scratch directory outside it (:mod:`crmlib.engine`); the runner
  makes one scratch directory per run (``CRM_SCRATCH_DIR`` for its kernels) and removes it at the end.
* **Kill-safe.** SIGTERM and SIGINT stop the kernel, remove the temporary run folder and the scratch
  directory, and raise :class:`RunInterrupted` (exit code 143 or 130); nothing is published. After a
  SIGKILL or a crash, the next run removes what the dead run left: ``.tmp-*`` folders under the output
  folder (no live run holds the lock) and ``crmlib-*`` scratch directories whose owner is gone.
* **Progress.** One line per stage on ``out`` (stdout), the same whether it is a terminal, a pipe or a log.
  When stderr is a terminal, a live line there also follows the step a stage reports
  (:func:`crmlib.progress.step`), its count, the elapsed time and the notebook cell; it is erased before
  the stage's line is printed.
* **Stage statuses.** ``ok``, ``ok_with_warnings`` (a model step recorded a warning with
  :func:`crmlib.status.guard`), ``failed`` (the whole error message is kept) or ``skipped`` (with the
  reason). Each stage declares the run tables it needs and those it uses when present (:data:`STAGES`);
  a failed stage skips only the stages that need its tables.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import functools
import hashlib
import json
import logging
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

from crmlib import progress, report
from crmlib.engine import make_scratch_dir, remove_scratch_dir, remove_stale_scratch
from crmlib.i18n import N_, _, set_language
from crmlib.params import load_params, plain_name_problem, public_params
from crmlib.status import read_warnings, status_words

__all__ = ["STAGES", "Stage", "StageRecord", "RunResult", "run_pipeline", "discover_notebooks", "NOTEBOOKS_DIR",
           "RunLocked", "RunInterrupted", "UsageError", "LOCK_FILE", "MAX_ERROR_CHARS", "os_error_message"]

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
#: The lock file a run holds (``flock``) in its output folder.
LOCK_FILE = ".crm-run.lock"
#: Prefix of the hidden folder a run is built in.
TMP_PREFIX = ".tmp-"
#: A failed stage's error message is kept (manifest, console) up to this many characters.
MAX_ERROR_CHARS = 4000
#: Said on stderr and on the run page (there in the run's language) when customer keys use the default salt.
DEFAULT_SALT_WARNING = N_("customer keys use the public default salt; set CRM_PII_SALT (or privacy.salt) to a "
                          "secret value so that keys cannot be recomputed from emails and phones (README, Privacy)")
#: Files older versions wrote into run folders; they held raw input (PII) and are removed on sight.
_LEGACY_SCRATCH = (".duckdb_tmp", ".ingest_tmp", "engine.duckdb", "engine.duckdb.wal")


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline and the run tables it depends on.

    Parameters
    ----------
    name, title : str
        Stage name (``NN_<name>.ipynb``) and its report title.
    needs : tuple of tuple of str
        Run tables the stage cannot run without: every group needs at least one of its tables.
    uses : tuple of str
        Run tables the stage uses when present and runs without.
    writes : tuple of str
        Run tables the stage writes (which stage to blame when a needed table is missing).
    input_kinds : tuple of str
        Input kinds the params must have at least one source of (for stages that read the inputs).
    """

    name: str
    title: str
    needs: tuple[tuple[str, ...], ...] = ()
    uses: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    input_kinds: tuple[str, ...] = ()


#: Tables ingest writes, one per input kind present (contacts become ``customers``).
_KIND_TABLES = ("orders", "events", "touchpoints", "spend", "experiments", "surveys", "order_lines")

STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("ingest", N_("Ingest and identity resolution"), input_kinds=("orders",),
          writes=("customers", "identity_map", "identity_links", "quarantine", *_KIND_TABLES)),
    Stage("segmentation", N_("Segmentation and customer lifetime value"), needs=(("orders",),),
          uses=("customers", "surveys", "order_lines"),
          writes=("rfm", "clv", "audiences", "recommendations", "also_bought", "rec_evaluation")),
    Stage("roi", N_("ROI and attribution"), needs=(("orders",), ("touchpoints", "spend", "events")),
          uses=("clv", "identity_map", "events"),
          writes=("attribution", "roi", "mmm", "roi_budget", "roi_disagreement", "funnel")),
    Stage("ab_tests", N_("A/B and holdout experiments"), needs=(("experiments",), ("orders",)),
          uses=("events", "spend", "roi"), writes=("ab_results",)),
)}

_PACKAGES = ("crmlib", "ibis-framework", "duckdb", "pandas", "numpy", "scipy", "statsmodels",
             "scikit-learn", "splink", "papermill", "nbconvert", "phonenumbers", "matplotlib", "pydantic")


class UsageError(ValueError):
    """The command line cannot be used (unknown stage, run id that is not a plain name, existing run)."""


class RunLocked(RuntimeError):
    """Another run holds the output folder's lock; nothing was touched."""


class RunInterrupted(BaseException):
    """The run was stopped by SIGTERM or SIGINT and cleaned up; nothing was published.

    A ``BaseException`` (like ``KeyboardInterrupt``) so that no ``except Exception`` swallows it.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"interrupted by {self.signal_name}")

    @property
    def exit_code(self) -> int:
        """The shell convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum


@dataclass
class StageRecord:
    """What happened to one stage in a run (one entry of ``manifest.json``'s ``stages``)."""

    stage: str
    notebook: str | None
    status: str = "pending"  # ok | ok_with_warnings | failed | skipped
    reason: str | None = None  # English, for the console, the scheduler's log and scripts reading the manifest
    reason_text: str | None = None  # the same reason in the run's language, as the pages show it
    duration_s: float | None = None
    html: str | None = None
    error: str | None = None
    warnings: list[dict] = field(default_factory=list)


@dataclass
class RunResult:
    """The outcome of :func:`run_pipeline`: the final run directory and each stage's record."""

    run_id: str
    run_dir: Path
    stages: list[StageRecord] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No stage failed (ok and ok-with-warnings runs)."""
        return all(s.status != "failed" for s in self.stages)

    @property
    def status(self) -> str:
        """``failed``, ``ok_with_warnings`` or ``ok``."""
        if not self.ok:
            return "failed"
        return "ok_with_warnings" if any(s.status == "ok_with_warnings" for s in self.stages) else "ok"

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
    """``<run name>_<UTC time to the millisecond>Z-<4 random hex digits>``: unique even for runs started
    in the same millisecond, and in time order when sorted."""
    name = re.sub(r"[^\w-]+", "-", params["run"]["name"]).strip("-") or "run"
    return f"{name}_{now.strftime('%Y%m%dT%H%M%S')}.{now.microsecond // 1000:03d}Z-{secrets.token_hex(2)}"


def _fingerprint(path: str) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return {"path": path, "size": os.path.getsize(path), "sha256": digest.hexdigest()}


def _input_fingerprint(source: dict) -> dict:
    try:
        return _fingerprint(source["path"]) | {"source": source["name"], "kind": source["kind"]}
    except OSError as exc:
        raise UsageError(f"cannot read the file of source {source['name']!r}, {source['path']}: {exc.strerror}.\n"
                         "Fix: check that the file is there and that this user may read it.") from None


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
    import pyarrow.dataset as ds

    counts = {}
    for p in sorted(tables_dir.glob("*.parquet")):
        try:  # one file (DuckDB) or a folder of part files (Spark); Spark's _SUCCESS and .crc files are skipped
            counts[p.stem] = ds.dataset(p, format="parquet").count_rows()
        except Exception:  # a stage may leave a partial file behind when it fails
            counts[p.stem] = None
    return counts


def _latest_ok_run(output_dir: Path, run_name: str) -> Path | None:
    """The newest (by start time) published run of ``run_name`` in which no stage failed."""
    best: tuple[str, Path] | None = None
    for manifest in output_dir.glob("*/manifest.json"):
        try:
            m = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if m.get("run_name") != run_name or m.get("status") not in ("ok", "ok_with_warnings"):
            continue
        key = (str(m.get("started", "")), manifest.parent)
        if best is None or key[0] > best[0]:
            best = key
    return best[1] if best else None


# -- operating-system errors in plain words --------------------------------------------------------------
def os_error_message(exc: OSError) -> str:
    """One or two lines saying which path the system refused, why, and how to fix it."""
    path = exc.filename if exc.filename is not None else "a file"
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        return (f"cannot write {path}: no space left on the device (disk full or quota reached).\n"
                "Fix: free space there (old runs in the output folder can be deleted) or point run.output_dir "
                "(reports) or CRM_SCRATCH_DIR (temporary files) at a larger disk.")
    if exc.errno == errno.EROFS:
        return (f"cannot write {path}: the file system is read-only.\n"
                "Fix: set run.output_dir in the params file to a writable folder.")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return (f"cannot use {path}: permission denied.\n"
                "Fix: give this user read and write access to it, or set run.output_dir in the params file "
                "to a folder it can write to.")
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        return (f"cannot create the folder {path}: a file is in the way ({exc.strerror}).\n"
                "Fix: set run.output_dir in the params file to a folder path.")
    return f"cannot use {path}: {exc.strerror or exc}."


# -- the output folder's lock and leftovers ----------------------------------------------------------------
@contextmanager
def _run_lock(output_dir: Path) -> Iterator[None]:
    """Hold ``<output_dir>/.crm-run.lock`` for the block; raise :class:`RunLocked` at once if it is held."""
    path = output_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            raise RunLocked(f"another crm run ({holder or 'pid unknown'}) is using the output folder "
                            f"{output_dir}; this run was not started. Wait for it to finish, or use another "
                            "run.output_dir.") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, started {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M:%S} UTC"
                  .encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _remove_leftovers(output_dir: Path) -> list[str]:
    """Remove what killed runs left in ``output_dir`` (call it holding the lock: no live run owns them).

    ``.tmp-*`` run folders, and the engine files older versions kept inside run folders (raw input).
    """
    removed = []
    for path in sorted(output_dir.glob(TMP_PREFIX + "*")):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    for run_dir in [*output_dir.glob("*/"), *output_dir.glob("interactive/*/")]:
        for name in _LEGACY_SCRATCH:
            old = run_dir / name
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            elif old.exists() or old.is_symlink():
                old.unlink(missing_ok=True)
            else:
                continue
            removed.append(str(old.relative_to(output_dir)))
    return removed


# -- signals -------------------------------------------------------------------------------------------------
class _Signals:
    """SIGTERM/SIGINT handling for one run: the first signal raises :class:`RunInterrupted` in the main
    thread, unless it comes while publishing (then it is raised right after); later signals are ignored,
    so a second Ctrl-C cannot interrupt the clean-up."""

    def __init__(self) -> None:
        self.fired = False
        self.pending: int | None = None
        self.deferring = False
        self._previous: dict[int, Any] = {}

    def handle(self, signum: int, frame: Any) -> None:
        if self.fired:
            return
        if self.deferring:
            self.pending = signum
            return
        self.fired = True
        raise RunInterrupted(signum)

    @contextmanager
    def installed(self) -> Iterator[_Signals]:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self.handle)
        try:
            yield self
        finally:
            for signum, previous in self._previous.items():
                signal.signal(signum, previous)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Hold a signal that arrives in the block until the block is done (publishing is one step)."""
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False
        if self.pending is not None and not self.fired:
            self.fired = True
            raise RunInterrupted(self.pending)


# -- kernels ---------------------------------------------------------------------------------------------------
#: Kernel managers of this process whose kernel may be alive (stopped by :func:`_kill_kernels` on a signal).
_KERNELS: set = set()


@functools.cache
def _kernel_manager_class() -> type:
    """nbclient's kernel manager, plus: registered while its kernel lives, and no interrupt at shutdown.

    jupyter_client interrupts (SIGINT) a kernel before asking it to shut down. nbclient only shuts down
    idle kernels, so the interrupt stops nothing, but when it lands while the kernel is still finishing
    the last reply it logs ``KeyboardInterrupt caught in kernel`` on stderr (2 of 4 runs).
    """
    from jupyter_client.manager import AsyncKernelManager

    class RunnerKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            await super()._async_launch_kernel(kernel_cmd, **kw)
            _KERNELS.add(self)

        async def _async_interrupt_kernel(self) -> None:
            if self.shutting_down:
                return
            await super()._async_interrupt_kernel()

        async def _async_cleanup_resources(self, restart: bool = False) -> None:
            await super()._async_cleanup_resources(restart=restart)
            _KERNELS.discard(self)

    return RunnerKernelManager


def _kill_kernels(wait_s: float = 10.0) -> None:
    """SIGKILL every live kernel's process group (never ours) and wait for each to be gone, so none
    writes into the run folder after it is removed."""
    for km in list(_KERNELS):
        process = getattr(getattr(km, "provisioner", None), "process", None)
        if process is None:
            continue
        try:
            group = os.getpgid(process.pid)
            if group != os.getpgrp():
                os.killpg(group, signal.SIGKILL)
            else:
                process.kill()
        except (ProcessLookupError, PermissionError):
            pass
        try:
            process.wait(timeout=wait_s)
        except Exception:  # already reaped by the kernel manager's thread, or stuck: nothing more to do
            pass
        _KERNELS.discard(km)


class _NotebookJob:
    """One papermill execution in a worker thread, so the main thread stays free to take signals."""

    def __init__(self, pm: Any, **kwargs: Any) -> None:
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(pm, kwargs), name="crm-notebook", daemon=True)

    def _run(self, pm: Any, kwargs: dict) -> None:
        try:
            pm.execute_notebook(**kwargs)
        except BaseException as exc:  # reported by wait(); a worker thread must not print its own traceback
            self.error = exc

    def wait(self, tick: Callable[[], None] | None = None) -> BaseException | None:
        """Run the notebook and return its error (None when it ran through), calling ``tick`` (the live
        progress line) between short waits: a signal and a redraw both come in this thread."""
        self._thread.start()
        while self._thread.is_alive():
            self._thread.join(progress.TICK_S)
            if tick is not None:
                tick()
        return self.error

    def stop(self, wait_s: float = 30.0) -> None:
        """After a signal: kill the kernel, then let papermill notice and return."""
        _kill_kernels()
        if self._thread.ident is not None:
            self._thread.join(wait_s)


#: The notebook job running now (for the clean-up after a signal).
_CURRENT_JOB: dict[str, _NotebookJob] = {}


# -- stage dependencies ------------------------------------------------------------------------------------
def _writer(table: str) -> str | None:
    return next((s.name for s in STAGES.values() if table in s.writes), None)


def _reason(message: str, **values: Any) -> tuple[str, str]:
    """A stage's skip or fail reason: ``message`` (marked with ``N_``) filled in English for the manifest
    and the console, and in the run's language for the pages.

    Values named ``stage`` or ``writer`` are stage names and ``kinds`` a list of input kinds: the page
    shows their labels (``数据接入``, ``触点``) where the console shows the codes.
    """
    english = {k: " or ".join(v) if k == "kinds" else v for k, v in values.items()}
    shown = {k: (_(" or ").join(report.kind_label(x) for x in v) if k == "kinds"
                 else report.stage_label(v) if k in ("stage", "writer") else v) for k, v in values.items()}
    return message.format(**english), _(message).format(**shown)


def _unmet_needs(stage: Stage, *, kinds: set[str], failed: set[str], ran: set[str],
                 tables_dir: Path) -> tuple[tuple[str, str], bool] | None:
    """Why ``stage`` cannot run (None when it can), as :func:`_reason` gives it: a needed table of a
    failed stage, of an input kind the params do not have, or of a stage that did not run in this run and
    left no copy. The flag says the last case: a table that should be there is not (the run is then
    incomplete, not just shorter)."""
    no_input = N_("no input of kind {kinds} in the params")
    if stage.input_kinds and not kinds.intersection(stage.input_kinds):
        return _reason(no_input, kinds=list(stage.input_kinds)), False
    for group in stage.needs:
        failed_writers, absent_kinds, missing = [], [], []
        for table in group:
            writer = _writer(table)
            if table in _KIND_TABLES and table not in kinds:
                absent_kinds.append(table)
            elif writer in failed:
                failed_writers.append(writer)
            elif writer not in ran and not (tables_dir / f"{table}.parquet").exists():
                missing.append((table, writer))
            else:
                break  # this table is there (or will be): the group is met
        else:
            if failed_writers:
                return _reason(N_("needs tables of the failed stage {stage}"), stage=failed_writers[0]), False
            if missing:
                table, writer = missing[0]
                return _reason(N_("needs table {table} (written by stage {writer}), which this run does not "
                                  "have and no earlier successful run left; run {writer} too"),
                               table=table, writer=writer), True
            return _reason(no_input, kinds=absent_kinds), False
    return None


def _error_text(exc: BaseException) -> str:
    """The whole error message of a failed stage (``Name: message``, every line), capped in size."""
    ename = getattr(exc, "ename", None) or type(exc).__name__
    evalue = getattr(exc, "evalue", None)
    if evalue is None:
        evalue = str(exc)
    text = f"{ename}: {str(evalue).strip()}".rstrip(": ")
    if len(text) > MAX_ERROR_CHARS:
        text = text[:MAX_ERROR_CHARS] + f"... [{len(text) - MAX_ERROR_CHARS:,} more characters]"
    return text


def _status_words(status: str) -> str:
    return status_words(status, translate=False)  # the console stays English whatever the run's language


# -- the run -------------------------------------------------------------------------------------------------
def run_pipeline(
    params_path: str | Path,
    *,
    run_id: str | None = None,
    only: list[str] | None = None,
    notebooks_dir: Path | None = None,
    kernel_name: str = "python3",
    execution_timeout: int | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    show_progress: bool | None = None,
) -> RunResult:
    """Run the stage notebooks on ``params_path`` and publish the run directory.

    Parameters
    ----------
    params_path : str or Path
        The params YAML (validated first; a :class:`crmlib.params.ParamsError` stops everything).
    run_id : str, optional
        A plain name (no ``/``, ``..`` or leading dot). Default ``<run name>_<UTC time>Z-<random>``.
    only : list of str, optional
        Stages to run; the others are recorded as skipped ("not selected"). Tables of the stages not run
        are copied from the newest run of the same params name in which no stage failed, recorded as
        ``based_on`` in the manifest.
    notebooks_dir : Path, optional
        Folder of ``NN_<stage>.ipynb`` notebooks (default :data:`NOTEBOOKS_DIR`).
    kernel_name : str
        Jupyter kernel; ``python3`` resolves to the running interpreter.
    execution_timeout : int, optional
        Per-cell timeout in seconds (papermill's ``execution_timeout``).
    out, err : text streams, optional
        Progress lines (default stdout; the last line printed is the run directory) and errors and
        warnings for the operator (default stderr).
    show_progress : bool, optional
        Show a live line within each stage on ``err`` (:mod:`crmlib.progress`): the step, its count,
        the elapsed time. Default: when ``err`` is a terminal. Either way ``out`` gets one line per stage.

    Returns
    -------
    RunResult

    Raises
    ------
    crmlib.params.ParamsError
        The params file cannot be used (nothing created).
    UsageError
        Unknown ``only`` stage, ``run_id`` not a plain name or already used (nothing created).
    RunLocked
        Another run holds the output folder (nothing touched).
    RunInterrupted
        SIGTERM or SIGINT; the kernel was stopped and the temporary state removed.
    OSError
        The system refused a write (disk full, folder not writable); the temporary state was removed.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    notebooks_dir = Path(notebooks_dir) if notebooks_dir is not None else NOTEBOOKS_DIR
    params = load_params(params_path)
    set_language(params["run"]["language"])
    unknown = sorted(set(only or []) - set(STAGES))
    if unknown:
        raise UsageError(f"unknown stage(s) {', '.join(unknown)}; stages are {', '.join(STAGES)}")
    if run_id is not None and (problem := plain_name_problem(run_id)):
        raise UsageError(f"--run-id {problem}")
    started = dt.datetime.now(dt.timezone.utc)
    run_id = run_id or _make_run_id(params, started)
    output_dir = Path(params["run"]["output_dir"])
    final_dir = output_dir / run_id
    if final_dir.exists():
        raise UsageError(f"run directory already exists: {final_dir} (choose another --run-id)")

    output_dir.mkdir(parents=True, exist_ok=True)
    with _run_lock(output_dir), _Signals().installed() as signals:
        removed = _remove_leftovers(output_dir) + [p.name for p in remove_stale_scratch()]
        if removed:
            print(f"removed what killed runs left behind: {', '.join(removed)}", file=out, flush=True)
        if final_dir.exists():  # made by another run between the check above and the lock
            raise UsageError(f"run directory already exists: {final_dir} (choose another --run-id)")
        work_dir = output_dir / f"{TMP_PREFIX}{run_id}"
        scratch_dir, scratch_lock = make_scratch_dir("run-")
        saved_env = os.environ.get("CRM_SCRATCH_DIR")
        try:
            # the kernels inherit it: their engines' databases and spill files go under this run's scratch
            os.environ["CRM_SCRATCH_DIR"] = str(scratch_dir)
            (work_dir / "tables").mkdir(parents=True)
            result, manifest = _run_stages(
                params, run_id=run_id, only=only, notebooks_dir=notebooks_dir, kernel_name=kernel_name,
                execution_timeout=execution_timeout, out=out, err=err, work_dir=work_dir, final_dir=final_dir,
                output_dir=output_dir, started=started, scratch_dir=scratch_dir,
                show_progress=progress.is_terminal(err) if show_progress is None else show_progress)
            with signals.deferred():
                _publish(work_dir, final_dir, output_dir, manifest)
        except BaseException as exc:
            signals.fired = True  # a signal now must not cut the clean-up short
            logging_level = logging.root.manager.disable
            if isinstance(exc, RunInterrupted):
                logging.disable(logging.CRITICAL)  # papermill and nbclient would log the dead kernel
            try:
                current = _CURRENT_JOB.pop("job", None)
                if current is not None:
                    current.stop()
                _kill_kernels()
                shutil.rmtree(work_dir, ignore_errors=True)
            finally:
                logging.disable(logging_level)
            raise
        finally:
            if saved_env is None:
                os.environ.pop("CRM_SCRATCH_DIR", None)
            else:
                os.environ["CRM_SCRATCH_DIR"] = saved_env
            remove_scratch_dir(scratch_dir, scratch_lock)
    print(f"report: {final_dir / 'index.html'}", file=out, flush=True)
    print(str(final_dir), file=out, flush=True)
    return result


def _run_stages(params: dict, *, run_id: str, only: list[str] | None, notebooks_dir: Path, kernel_name: str,
                execution_timeout: int | None, out: TextIO, err: TextIO, work_dir: Path, final_dir: Path,
                output_dir: Path, started: dt.datetime, scratch_dir: Path,
                show_progress: bool) -> tuple[RunResult, dict]:
    """Execute the stages in ``work_dir`` and return the result and the finished manifest.

    With ``show_progress``, a live line on ``err`` follows each stage's steps (their file is in the run's
    private ``scratch_dir``, never in the run folder) and is erased before the stage's line on ``out``.
    """
    notebooks = discover_notebooks(notebooks_dir)
    kinds = {s["kind"] for s in params["sources"]}
    result = RunResult(run_id=run_id, run_dir=final_dir)
    shown = {k: v for k, v in public_params(params).items() if not k.startswith("_")}
    salt_source = shown.get("privacy", {}).get("salt_source")
    operator_warnings = []
    if salt_source == "default":
        operator_warnings.append(DEFAULT_SALT_WARNING)
    for warning in operator_warnings:
        print(f"crm run: warning: {warning}", file=err, flush=True)
    manifest: dict = {
        "run_id": run_id,
        "run_name": params["run"]["name"],
        "status": "running",
        "params_path": params["_path"],
        "params": shown,
        "started": started.isoformat(),
        "only": list(only) if only else None,
        "inputs": [_input_fingerprint(s) for s in params["sources"]],
        "privacy": {"salt_source": salt_source},
        "operator_warnings": operator_warnings,
        "packages": _package_versions(),
        "git_sha": _git_sha(),
        "python": sys.executable,
    }

    based_on = None
    if only and any(s not in only for s in STAGES):
        based_on = _latest_ok_run(output_dir, params["run"]["name"])
        if based_on is not None:
            shutil.copytree(based_on / "tables", work_dir / "tables", dirs_exist_ok=True)
    manifest["based_on"] = based_on.name if based_on else None

    import papermill as pm  # imported here: it costs seconds, and params errors must not wait for it

    failed: set[str] = set()
    ran: set[str] = set()
    for number, stage in enumerate(STAGES.values(), start=1):
        nb = notebooks.get(stage.name)
        rec = StageRecord(stage=stage.name, notebook=nb.name if nb else None)
        result.stages.append(rec)
        prefix = f"[{number}/{len(STAGES)}] {stage.name}"
        if only and stage.name not in only:
            rec.status = "skipped"
            # "not selected" opens both: the indexes and the brief recognise these stages by it
            rec.reason, rec.reason_text = (
                _reason(N_("not selected; tables from run {run}"), run=based_on.name) if based_on else
                _reason(N_("not selected; no earlier run of {name} without a failed stage to take its tables "
                           "from"), name=repr(params["run"]["name"])))
        elif nb is None:
            rec.status = "skipped"
            rec.reason, rec.reason_text = _reason(N_("no notebook for this stage in {folder}"),
                                                  folder=str(notebooks_dir))
        elif (unmet := _unmet_needs(stage, kinds=kinds, failed=failed, ran=ran, tables_dir=work_dir / "tables")):
            (rec.reason, rec.reason_text), table_missing = unmet
            # a stage the operator asked for by name that cannot find its tables is a failed run, not a
            # shorter one: a scheduler must not read "nothing was done" as success
            rec.status = "failed" if table_missing and only else "skipped"
            if rec.status == "failed":
                failed.add(stage.name)
                rec.error = rec.reason
                print(f"{prefix}: failed ({rec.reason})", file=out, flush=True)
                print(f"crm run: stage {stage.name} failed: {rec.reason}", file=err, flush=True)
                continue
        if rec.status == "skipped":
            print(f"{prefix}: skipped ({rec.reason})", file=out, flush=True)
            continue
        executed = work_dir / nb.name
        t0 = time.perf_counter()
        with progress.stage_display(prefix, err, enabled=show_progress,
                                    steps_file=scratch_dir / f"progress-{stage.name}.jsonl") as display:
            job = _NotebookJob(
                pm, input_path=str(nb), output_path=str(executed),
                parameters={"params_path": params["_path"], "run_dir": str(work_dir)},
                kernel_name=kernel_name, cwd=str(nb.parent), progress_bar=display.papermill_progress_bar,
                log_output=False, execution_timeout=execution_timeout, report_mode=True,
                kernel_manager_class=_kernel_manager_class(),
                # the kernel's own start-up warnings (TCP on localhost, no encryption) are noise in a
                # scheduler's log; errors still show
                extra_arguments=["--IPKernelApp.log_level=ERROR"],
            )
            _CURRENT_JOB["job"] = job
            error = job.wait(tick=display.tick)
            _CURRENT_JOB.pop("job", None)
        rec.duration_s = round(time.perf_counter() - t0, 2)
        rec.warnings = [{"step": w.get("step"), "message": w.get("message")}
                        for w in read_warnings(work_dir, stage.name)]
        if error is None:
            rec.status = "ok_with_warnings" if rec.warnings else "ok"
            ran.add(stage.name)
        elif isinstance(error, (KeyboardInterrupt, SystemExit)):
            raise error
        else:  # PapermillExecutionError, timeouts, dead kernels: all mean "failed"
            rec.status = "failed"
            failed.add(stage.name)
            rec.error = _error_text(error)
            rec.reason = rec.error.splitlines()[0][:300]
        if executed.exists():  # rendered after the loop, when the bar can link every stage page
            rec.html = executed.with_suffix(".html").name
        print(f"{prefix}: {_status_words(rec.status)} in {rec.duration_s:.1f} s", file=out, flush=True)
        for w in rec.warnings:
            print(f"    warning: {w['step']}: {w['message']}", file=out, flush=True)
        if rec.status == "failed":
            indented = "\n".join("  " + line for line in rec.error.splitlines())
            print(f"crm run: stage {stage.name} failed:\n{indented}", file=err, flush=True)

    pages = [(rec.html, _(STAGES[rec.stage].title)) for rec in result.stages if rec.html]
    for rec in result.stages:
        if rec.html:
            report.render_notebook(work_dir / rec.notebook, work_dir / rec.html,
                                   title=f"{_(STAGES[rec.stage].title)} - {run_id}", nav=pages,
                                   language=params["run"]["language"])

    ended = dt.datetime.now(dt.timezone.utc)
    manifest.update({
        "status": result.status,
        "failed_stage": result.failed_stage,
        "ended": ended.isoformat(),
        "duration_s": round((ended - started).total_seconds(), 2),
        "stages": [asdict(s) for s in result.stages],
        "row_counts": _table_row_counts(work_dir / "tables"),
    })
    tables = work_dir / "tables"
    quality = tables / "data_quality.json"
    if quality.exists():
        manifest["data_quality"] = json.loads(quality.read_text(encoding="utf-8")).get("sources")
    as_of = tables / "as_of.json"
    if as_of.exists():
        manifest["as_of"] = json.loads(as_of.read_text(encoding="utf-8"))
    return result, manifest


def _publish(work_dir: Path, final_dir: Path, output_dir: Path, manifest: dict) -> None:
    """Write the manifest and the run page, drop scratch files, move the run into place, update the index."""
    for name in _LEGACY_SCRATCH:  # never publish a copy of raw input, whoever wrote it
        path = work_dir / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    report.write_text_atomic(work_dir / "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False, default=str))
    report.write_run_index(work_dir, manifest)
    os.rename(work_dir, final_dir)
    report.write_reports_index(output_dir)
