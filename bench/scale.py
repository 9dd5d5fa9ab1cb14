"""Benchmark the whole pipeline at scale: the 1M-customer sample end to end, on DuckDB and on Spark.

    .venv/bin/python bench/scale.py [--data /tmp/scale/data] [--customers 1_000_000] [--out /tmp/scale/bench]
                                    [--engines duckdb spark] [--master local[2]] [--spark-memory 4GB]
                                    [--memory-limit SIZE] [--repeat 1] [--compare-with DUCKDB_RUN_DIR]

Data: the synthetic sample of ``crm sample`` (1M customers: 9.8M orders, 21.7M touches, 15.5M events),
generated into ``--data`` when that folder holds no sample yet (about 10 minutes at 1M customers; it is
reused afterwards). The params are ``params/sample.yaml`` with its sources pointed at ``--data`` and an
``engine:`` section per engine.

Each run is ``crm run`` in a child process, exactly as an operator starts it. The runner executes every
stage's notebook in a fresh papermill kernel (a child process of the runner; on Spark the kernel starts
the JVM as its own child), so the memory a stage needs is the kernel's, not the runner's. A sampler
thread walks the runner's process tree every ``--interval`` seconds and records, per process, its RSS
and its ``VmHWM`` (``/proc/<pid>/status``: the kernel's own high-water mark, exact however short the
peak). The stage a sample belongs to is known from the runner's progress lines (one per stage).
Printed per stage:

* **wall** - the stage's duration as the runner records it in ``manifest.json``;
* **kernel peak** - the ``VmHWM`` of the stage's kernel process (and, on Spark, of the JVM: the heap
  grows up to ``spark.driver.memory`` and stays there, so it is printed apart);
* **tree peak** - the largest sampled sum of RSS over the whole tree (runner + kernel [+ JVM]): what the
  machine had to hold at once, sampled, so it can miss a peak shorter than the interval.

The target on a 2-core machine: DuckDB under the default memory limit (``engine.memory_limit`` unset:
:func:`crmlib.backends.duckdb.default_memory_limit`) runs the whole pipeline in <= 2 min and peaks at
<= 4 GiB RSS. The Spark run must give the same results: every run table's row count and the sum of
each of its numeric columns are compared with the DuckDB run's (relative tolerance ``--rtol``); a run of
``--engines spark`` alone is compared with ``--compare-with``, a finished DuckDB run on the same data.
The figures are printed against the targets; a benchmark never fails on them. The machine may be
shared: the load average before and after each run is printed with it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crmlib.backends.duckdb import default_memory_limit  # noqa: E402

GIB = 1 << 30
MIB = 1 << 20
TARGET_WALL_S = 120.0
TARGET_PEAK_BYTES = 4 * GIB
#: The phase after the last stage: the runner renders every stage page and publishes the run.
PUBLISH = "render+publish"


@dataclass
class ProcessPeak:
    """What the sampler saw of one process of the tree."""

    pid: int
    name: str
    samples: dict[int, int] = field(default_factory=dict)
    rss_max: int = 0
    hwm: int = 0
    cpu_s: float = 0.0

    @property
    def phase(self) -> int:
        """The phase the process lived in: the one it was seen in most often (a kernel starts and ends
        within its stage, but the runner's progress line may reach us a sample late)."""
        return max(self.samples, key=self.samples.get)


@dataclass
class RunFigures:
    """One ``crm run``: its phases, their durations and memory peaks, and where its tables are."""

    engine: str
    run_dir: Path | None = None
    returncode: int = 0
    wall_s: float = 0.0
    phases: list[str] = field(default_factory=list)
    phase_wall: dict[str, float] = field(default_factory=dict)
    tree_peak: dict[str, int] = field(default_factory=dict)
    processes: dict[int, ProcessPeak] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    memory_limit: str = ""


def vm_hwm(pid: int) -> int:
    """The process' peak resident set size in bytes (``VmHWM``), 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def process_role(proc: psutil.Process) -> str:
    """A short name for a process of the tree: the runner, a kernel, the JVM or a helper."""
    try:
        cmd = " ".join(proc.cmdline())
    except (psutil.Error, OSError):
        return "gone"
    if "ipykernel" in cmd:
        return "kernel"
    if "java" in proc.name() or "org.apache.spark" in cmd:
        return "jvm"
    return proc.name()


class TreeSampler(threading.Thread):
    """Polls the process tree of ``root`` until stopped, recording per-phase peaks into ``figures``."""

    def __init__(self, root: psutil.Process, figures: RunFigures, interval: float) -> None:
        super().__init__(daemon=True)
        self.root, self.figures, self.interval = root, figures, interval
        self.phase = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            self.sample()
            self.halt.wait(self.interval)
        self.sample()

    def sample(self) -> None:
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return
        total = 0
        for proc in procs:
            try:
                rss = proc.memory_info().rss
                times = proc.cpu_times()
            except psutil.Error:
                continue
            total += rss
            peak = self.figures.processes.get(proc.pid)
            if peak is None:
                role = "runner" if proc.pid == self.root.pid else process_role(proc)
                peak = self.figures.processes[proc.pid] = ProcessPeak(proc.pid, role)
            elif peak.name not in ("runner", "kernel", "jvm"):
                peak.name = process_role(proc)  # spark-submit is a shell script that execs the JVM in place
            peak.samples[self.phase] = peak.samples.get(self.phase, 0) + 1
            peak.rss_max = max(peak.rss_max, rss)
            peak.hwm = max(peak.hwm, vm_hwm(proc.pid))
            peak.cpu_s = max(peak.cpu_s, times.user + times.system)
        phase = self.phase
        self.figures.tree_peak[phase] = max(self.figures.tree_peak.get(phase, 0), total)


def write_params(data: Path, out: Path, engine: dict, name: str) -> Path:
    """``params/sample.yaml`` with its sources in ``data``, its reports in ``out`` and ``engine``."""
    params = yaml.safe_load((ROOT / "params" / "sample.yaml").read_text(encoding="utf-8"))
    for source in params["sources"]:
        source["path"] = str(data / Path(source["path"]).name)
    params["run"]["output_dir"] = str(out / "reports")
    params["run"]["name"] = name
    params["engine"] = engine
    path = out / f"params_{name}.yaml"
    path.write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def run_pipeline(engine_name: str, params_path: Path, run_id: str, interval: float, env: dict) -> RunFigures:
    """``crm run`` on ``params_path`` in a child process, sampled until it exits."""
    figures = RunFigures(engine=engine_name, load_before=os.getloadavg())
    crm = Path(sys.executable).with_name("crm")
    cmd = [str(crm), "run", "--params", str(params_path), "--run-id", run_id]
    clock = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    sampler = TreeSampler(psutil.Process(proc.pid), figures, interval)
    sampler.start()
    errors: list[str] = []
    drain = threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True)
    drain.start()
    last_line = ""
    for line in proc.stdout:
        line = line.rstrip("\n")
        print(f"    {engine_name}: {line}", flush=True)
        last_line = line or last_line
        if line.startswith("[") and "]" in line and ":" in line:
            stage = line.split("]", 1)[1].split(":", 1)[0].strip()
            figures.phases.append(stage)
            figures.status[stage] = line.split(":", 1)[1].strip()
            sampler.phase = len(figures.phases)
    figures.returncode = proc.wait()
    figures.wall_s = time.perf_counter() - clock
    sampler.halt.set()
    sampler.join()
    drain.join(timeout=5)
    figures.phases.append(PUBLISH)
    figures.load_after = os.getloadavg()
    if errors:
        print("".join(f"    {engine_name} stderr: {e}" for e in errors[-20:]), end="", flush=True)
    run_dir = Path(last_line.strip())
    if (run_dir / "manifest.json").exists():
        figures.run_dir = run_dir
        manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
        for stage in manifest.get("stages", []):
            if stage.get("duration_s") is not None:
                figures.phase_wall[stage["stage"]] = float(stage["duration_s"])
        figures.phase_wall[PUBLISH] = figures.wall_s - sum(figures.phase_wall.values())
    return figures


def gib(n: int) -> str:
    return f"{n / GIB:5.2f}"


def print_run(figures: RunFigures) -> None:
    load = lambda t: " ".join(f"{x:.2f}" for x in t)  # noqa: E731
    print(f"\n{figures.engine}: crm run exit {figures.returncode}, wall {figures.wall_s:.1f} s, "
          f"memory limit {figures.memory_limit}; load average before {load(figures.load_before)}, "
          f"after {load(figures.load_after)}")
    print(f"  {'phase':<16} {'status':<30} {'wall s':>7} {'CPU s':>7} {'kernel GiB':>10} {'jvm GiB':>8} "
          f"{'tree GiB':>9}")
    for index, phase in enumerate(figures.phases):
        procs = [p for p in figures.processes.values() if p.phase == index]
        kernel = max((max(p.hwm, p.rss_max) for p in procs if p.name == "kernel"), default=0)
        jvm = max((max(p.hwm, p.rss_max) for p in procs if p.name == "jvm"), default=0)
        wall = figures.phase_wall.get(phase, math.nan)
        cpu = sum(p.cpu_s for p in procs if p.name != "runner")
        status = figures.status.get(phase, "")[:30]
        print(f"  {phase:<16} {status:<30} {wall:7.1f} {cpu:7.1f} {gib(kernel) if kernel else '    -':>10} "
              f"{gib(jvm) if jvm else '   -':>8} {gib(figures.tree_peak.get(index, 0)):>9}")
    runner = max((p.hwm for p in figures.processes.values() if p.name == "runner"), default=0)
    peak = max(figures.tree_peak.values(), default=0)
    kernels = max((p.hwm for p in figures.processes.values() if p.name in ("kernel", "jvm")), default=0)
    cpu = sum(p.cpu_s for p in figures.processes.values())
    print(f"  runner process peak {gib(runner)} GiB; largest kernel/JVM peak {gib(kernels)} GiB; "
          f"tree peak {gib(peak)} GiB; CPU seconds of the whole tree {cpu:.0f} (user+system; the kernels' "
          "CPU s above: less disturbed than wall time when the machine is shared)")


def table_figures(tables: Path) -> dict[str, dict]:
    """Per run table: its row count and the sum of each numeric column (booleans counted as 0/1)."""
    con = duckdb.connect()
    out = {}
    for path in sorted(tables.glob("*.parquet")):
        source = f"{path.as_posix()}/*.parquet" if path.is_dir() else path.as_posix()
        try:
            rel = con.read_parquet(source)
        except duckdb.Error as exc:
            out[path.stem] = {"error": str(exc).splitlines()[0]}
            continue
        numeric = [name for name, kind in zip(rel.columns, rel.dtypes)
                   if str(kind) in {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT",
                                    "USMALLINT", "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE", "BOOLEAN"}
                   or str(kind).startswith("DECIMAL")]
        parts = ["count(*)"] + [f'sum("{c}"::DOUBLE)' for c in numeric]
        row = con.execute(f"SELECT {', '.join(parts)} FROM read_parquet('{source}')").fetchone()
        out[path.stem] = {"rows": row[0], "sums": dict(zip(numeric, row[1:]))}
    con.close()
    return out


def compare_tables(reference: Path, other: Path, rtol: float) -> None:
    """Print, per run table, whether ``other``'s row count and column sums equal ``reference``'s."""
    ref, oth = table_figures(reference), table_figures(other)
    print(f"\nresults: spark vs duckdb, per run table (row count; sums of numeric columns, rtol {rtol:g})")
    equal = 0
    for name in sorted(set(ref) | set(oth)):
        a, b = ref.get(name), oth.get(name)
        if a is None or b is None:
            print(f"  {name:<32} only in {'spark' if a is None else 'duckdb'}")
            continue
        if "error" in a or "error" in b:
            print(f"  {name:<32} unreadable: {a.get('error') or b.get('error')}")
            continue
        differ = []
        for column in sorted(set(a["sums"]) | set(b["sums"])):
            x, y = a["sums"].get(column), b["sums"].get(column)
            if x is None and y is None:
                continue
            if x is None or y is None or not math.isclose(x, y, rel_tol=rtol, abs_tol=rtol):
                differ.append(f"{column} {x!r} vs {y!r}")
        same_rows = a["rows"] == b["rows"]
        if same_rows and not differ:
            equal += 1
            print(f"  {name:<32} equal ({a['rows']:,} rows, {len(a['sums'])} sums)")
        else:
            rows = f"rows {a['rows']:,} vs {b['rows']:,}" if not same_rows else f"{a['rows']:,} rows"
            print(f"  {name:<32} DIFFERENT: {rows}; {len(differ)} sums differ: {'; '.join(differ[:3])}")
    print(f"  {equal} of {len(set(ref) | set(oth))} tables equal")


def reset_peak_rss() -> None:
    """Reset this process' ``VmHWM`` to its current RSS (Linux ``clear_refs``, value 5)."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
        fh.write("5")


def profile_steps(stage: str, params_path: Path, finished_run: Path, work: Path) -> None:
    """Run ``stage``'s notebook in this process, one top-level statement at a time, on a copy of the tables
    of ``finished_run``, and print each statement's wall time and peak RSS (``VmHWM`` reset before it),
    largest first: which step holds the memory. The kernel of ``crm run`` runs the same statements."""
    import ast
    import shutil

    import nbformat

    from crmlib.runner import discover_notebooks

    run_dir = work / stage
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    if stage != "ingest":
        shutil.copytree(finished_run / "tables", run_dir / "tables", ignore=shutil.ignore_patterns("*.tmp"))
    notebook = nbformat.read(discover_notebooks()[stage], as_version=4)
    namespace: dict = {"__name__": "__main__"}
    steps = []
    cwd = os.getcwd()
    os.chdir(discover_notebooks()[stage].parent)
    try:
        for cell in notebook.cells:
            if cell.cell_type != "code":
                continue
            if "parameters" in cell.metadata.get("tags", []):
                namespace.update(params_path=str(params_path), run_dir=str(run_dir))
                continue
            for node in ast.parse(cell.source).body:
                code = ast.get_source_segment(cell.source, node) or ""
                reset_peak_rss()
                before = psutil.Process().memory_info().rss
                clock = time.perf_counter()
                exec(compile(ast.Module([node], []), f"<{stage}>", "exec"), namespace)
                steps.append((vm_hwm(os.getpid()), time.perf_counter() - clock, before,
                              psutil.Process().memory_info().rss, " ".join(code.split())[:90]))
    finally:
        os.chdir(cwd)
        engine = getattr(namespace.get("ctx"), "engine", None)
        if engine is not None:
            engine.close()
    print(f"\n{stage}: steps by peak RSS (VmHWM reset before each; RSS before and after it)")
    print(f"  {'peak GiB':>8} {'wall s':>7} {'before':>7} {'after':>7}  statement")
    for peak, wall, before, after, code in sorted(steps, reverse=True)[:15]:
        print(f"  {gib(peak):>8} {wall:7.1f} {gib(before):>7} {gib(after):>7}  {code}")


def frame_sizes(params_path: Path, finished_run: Path) -> None:
    """Print the per-customer frames the segmentation stage holds in pandas, built by the stage's own
    expressions over ``finished_run``'s tables, with their size in memory (``memory_usage(deep=True)``)."""
    from crmlib.engine import Engine
    from crmlib.params import load_params
    from crmlib.segmentation import stage as seg
    from crmlib.segmentation.rfm import rfm_features
    from crmlib.segmentation.summary import repeat_purchase_summary
    from crmlib.segmentation.tiers import loyalty_spend

    params = load_params(params_path)
    cfg = seg.segmentation_settings(params)
    with Engine(finished_run, settings=params["engine"]) as engine:
        as_of = seg.resolve_as_of(engine, params)
        orders = engine.table("orders")
        frames = {
            "rfm_features (rfm_stage)": lambda: rfm_features(orders, as_of),
            "rfm table (_rfm: segments, surveys, audiences, recommendations)": lambda: engine.table("rfm"),
            "repeat_purchase_summary (clv_stage)": lambda: repeat_purchase_summary(
                orders, as_of, time_unit=cfg["time_unit"], holdout_end=cfg["holdout_end"]),
            "clv table (_clv: churn, audiences, clv_by_segment)": lambda: engine.table("clv"),
            "loyalty_spend (loyalty_stage)": lambda: loyalty_spend(orders, as_of),
            "customers consent (audiences_stage)": lambda: engine.table("customers").select(
                "customer_key", "consent_marketing"),
            "surveys table, whole (surveys_stage)": lambda: engine.table("surveys"),
        }
        print("\nper-customer frames the segmentation stage holds in pandas (built from this run's tables)")
        print(f"  {'rows':>11} {'columns':>7} {'MiB':>8}  frame")
        for name, make in frames.items():
            try:
                frame = engine.to_pandas(make())
            except Exception as exc:  # a table this run did not write
                print(f"  {'-':>11} {'-':>7} {'-':>8}  {name}: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}")
                continue
            size = frame.memory_usage(deep=True).sum()
            print(f"  {len(frame):11,} {frame.shape[1]:7} {size / MIB:8.0f}  {name}")
            del frame


def ensure_sample(data: Path, customers: int) -> None:
    if (data / "truth" / "README.md").exists():
        return
    print(f"generating the {customers:,}-customer sample into {data} ...", flush=True)
    clock = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name("crm")), "sample", "--out", str(data),
                    "--customers", str(customers)], check=True)
    print(f"  {time.perf_counter() - clock:.0f} s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/tmp/scale/data"))
    ap.add_argument("--customers", type=int, default=1_000_000, help="sample size when --data holds none")
    ap.add_argument("--out", type=Path, default=Path("/tmp/scale/bench"))
    ap.add_argument("--engines", nargs="+", default=["duckdb", "spark"], choices=("duckdb", "spark"))
    ap.add_argument("--master", default="local[2]", help="Spark master")
    ap.add_argument("--spark-memory", default="4GB", help="Spark driver memory (engine.memory_limit on spark)")
    ap.add_argument("--memory-limit", default=None,
                    help="DuckDB engine.memory_limit; default unset (the machine-derived default)")
    ap.add_argument("--repeat", type=int, default=1, help="DuckDB runs (the machine may be shared)")
    ap.add_argument("--interval", type=float, default=0.2, help="process-tree sampling interval, seconds")
    ap.add_argument("--rtol", type=float, default=1e-9)
    ap.add_argument("--steps", nargs="+", metavar="STAGE", choices=("ingest", "segmentation", "roi", "ab_tests"),
                    help="instead of whole runs: run these stages' notebooks statement by statement in this "
                         "process on a copy of --from-run's tables (DuckDB), printing each step's peak RSS")
    ap.add_argument("--from-run", type=Path, help="a finished run directory (for --steps and --frames)")
    ap.add_argument("--compare-with", type=Path, metavar="RUN_DIR",
                    help="a finished DuckDB run directory to compare the Spark run's tables with, when this "
                         "invocation runs no DuckDB run of its own (--engines spark)")
    ap.add_argument("--frames", action="store_true",
                    help="print the per-customer frames segmentation holds in pandas, sized on --from-run")
    args = ap.parse_args()

    if args.frames:
        if not args.from_run or not (args.from_run / "tables").is_dir():
            ap.error("--frames needs --from-run: a finished run directory with its tables")
        out = args.out.resolve()
        out.mkdir(parents=True, exist_ok=True)
        frame_sizes(write_params(args.data.resolve(), out, {"kind": "duckdb"}, "scale_frames"), args.from_run.resolve())
        if not args.steps:
            return

    if args.steps:
        if not args.from_run or not (args.from_run / "tables").is_dir():
            ap.error("--steps needs --from-run: a finished run directory with its tables")
        out = args.out.resolve()
        out.mkdir(parents=True, exist_ok=True)
        params_path = write_params(args.data.resolve(), out, {"kind": "duckdb", "memory_limit": args.memory_limit},
                                   "scale_steps")
        print(f"DuckDB memory limit {args.memory_limit or default_memory_limit() + ' (default)'}")
        for stage in args.steps:
            profile_steps(stage, params_path, args.from_run.resolve(), out / "steps")
        return

    data, out = args.data.resolve(), args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    ensure_sample(data, args.customers)
    env = {k: v for k, v in os.environ.items() if k != "CRM_DUCKDB_MEMORY_LIMIT"}  # the default is measured
    stamp = dt.datetime.now().strftime("%Y%m%d_%H%M%S")
    print(f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / GIB:.1f} GiB RAM; "
          f"DuckDB default memory limit {default_memory_limit()}; data {data}")

    runs: list[RunFigures] = []
    for engine_name in args.engines:
        if engine_name == "duckdb":
            settings = {"kind": "duckdb", "memory_limit": args.memory_limit}
            limit = args.memory_limit or f"{default_memory_limit()} (default)"
            repeats = args.repeat
        else:
            settings = {"kind": "spark", "master": args.master, "memory_limit": args.spark_memory}
            limit = f"driver {args.spark_memory}, {args.master}"
            repeats = 1
        params_path = write_params(data, out, settings, f"scale_{engine_name}")
        for attempt in range(1, repeats + 1):
            run_id = f"{stamp}_{engine_name}_{attempt}"
            print(f"\n== {engine_name} run {attempt}/{repeats}: crm run --params {params_path} --run-id {run_id}",
                  flush=True)
            figures = run_pipeline(engine_name, params_path, run_id, args.interval, env)
            figures.memory_limit = limit
            runs.append(figures)
            print_run(figures)

    print("\nsummary" + " " * 35 + "wall s   target   peak GiB  target")
    for figures in runs:
        peak = max(figures.tree_peak.values(), default=0)
        kernels = max((p.hwm for p in figures.processes.values() if p.name in ("kernel", "jvm")), default=0)
        peak = max(peak, kernels)
        ok_wall = "met" if figures.wall_s <= TARGET_WALL_S else "MISSED"
        ok_peak = "met" if peak <= TARGET_PEAK_BYTES else "MISSED"
        target = figures.engine == "duckdb"
        print(f"  {figures.engine:<8} exit {figures.returncode} {figures.memory_limit[:28]:<30} "
              f"{figures.wall_s:7.1f}  {('<= 120 ' + ok_wall) if target else '-':<12} {gib(peak):>6}  "
              f"{('<= 4.00 ' + ok_peak) if target else '-'}")

    duck = next((r.run_dir for r in runs if r.engine == "duckdb" and r.run_dir), None)
    spark = next((r.run_dir for r in runs if r.engine == "spark" and r.run_dir), None)
    duck = duck or (args.compare_with.resolve() if args.compare_with else None)
    if duck and spark:
        print(f"\nDuckDB tables: {duck}")
        compare_tables(duck / "tables", spark / "tables", args.rtol)


if __name__ == "__main__":
    main()
