"""The engine's private scratch directory: outside the run directory, private, removed on close, at exit and
after a kill; several engines (processes) on one run directory at once."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from crmlib.engine import DATABASE_FILE, Engine, make_scratch_dir, remove_stale_scratch


@pytest.fixture(autouse=True)
def scratch_root(tmp_path: Path, monkeypatch) -> Path:
    root = tmp_path / "scratch"
    monkeypatch.setenv("CRM_SCRATCH_DIR", str(root))
    return root


def _python(code: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, env=os.environ, **kwargs)


def test_scratch_dir_is_private_and_outside_the_run_dir(tmp_path: Path, scratch_root: Path):
    run_dir = tmp_path / "reports" / "run"
    with Engine(run_dir) as eng:
        assert eng.scratch_dir.parent == scratch_root
        assert stat.S_IMODE(eng.scratch_dir.stat().st_mode) == 0o700
        assert Path(eng.database) == eng.scratch_dir / DATABASE_FILE
        eng.write_table("orders", pd.DataFrame({"amount": [1.0, 2.5]}))
        eng.scratch("staged", eng.table("orders"))  # a table in the engine database
        assert (eng.scratch_dir / DATABASE_FILE).exists()
        scratch = eng.scratch_dir
    assert not scratch.exists(), "close() must remove the scratch directory"
    # nothing but the run's tables under the run directory: no database, no spill folder
    assert sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*")) == ["tables", "tables/orders.parquet"]


def test_close_twice_and_in_memory_database(tmp_path: Path):
    eng = Engine(tmp_path / "run", database=":memory:")
    assert eng.scratch_dir.is_dir()  # spill files still go there
    eng.write_table("t", pd.DataFrame({"x": [1, 2, 3]}))
    assert eng.to_pandas(eng.table("t").x.sum()) == 6
    eng.close()
    eng.close()
    assert not eng.scratch_dir.exists()


def test_nothing_persists_between_engines_but_the_run_tables(tmp_path: Path):
    with Engine(tmp_path / "run") as first:
        first.write_table("orders", pd.DataFrame({"amount": [3.0]}))
        first.scratch("scratch_only", first.table("orders"))
    with Engine(tmp_path / "run") as second:
        assert second.list_tables() == ["orders"]
        assert "scratch_only" not in second.con.list_tables()


def test_scratch_dir_is_removed_at_interpreter_exit(tmp_path: Path):
    proc = _python(f"""
        from crmlib.engine import Engine
        eng = Engine({str(tmp_path / 'run')!r})
        eng.con.raw_sql("CREATE TABLE t AS SELECT 42 AS x")
        print(eng.scratch_dir)
    """)  # exits without close()
    assert proc.returncode == 0, proc.stderr
    scratch = Path(proc.stdout.strip())
    assert scratch.name.startswith("crmlib-") and not scratch.exists()


def test_stale_scratch_of_a_dead_process_is_removed_and_a_live_one_kept(tmp_path: Path, scratch_root: Path):
    proc = _python(f"""
        import os
        from crmlib.engine import Engine
        eng = Engine({str(tmp_path / 'run')!r})
        eng.con.raw_sql("CREATE TABLE t AS SELECT 'raw@example.com' AS email")
        print(eng.scratch_dir, flush=True)
        os._exit(0)  # like SIGKILL: no clean-up runs
    """)
    dead = Path(proc.stdout.strip())
    assert dead.is_dir() and (dead / DATABASE_FILE).exists()
    live = Engine(tmp_path / "run")
    claimed_now, lock_fd = make_scratch_dir()
    try:
        removed = remove_stale_scratch()
        assert removed == [dead] and not dead.exists()
        assert live.scratch_dir.is_dir() and claimed_now.is_dir()
    finally:
        live.close()
        os.close(lock_fd)


def test_two_processes_work_on_one_run_directory_at_once(tmp_path: Path):
    """Two notebooks open at once: each process opens an Engine on the same run directory, stages and writes
    a table, waits for the other's, and reads it. With one shared database file the second could not open."""
    run_dir = tmp_path / "reports" / "interactive" / "sample"
    script = textwrap.dedent("""
        import sys, time
        from pathlib import Path
        import pandas as pd
        from crmlib.engine import Engine
        run_dir, me, other = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
        eng = Engine(run_dir)
        staged = eng.scratch("staged", pd.DataFrame({"who": [me] * 1000, "n": range(1000)}))
        eng.write_table(f"from_{me}", staged)
        (run_dir / f"ready_{me}").touch()
        deadline = time.monotonic() + 90
        while not (run_dir / f"ready_{other}").exists():
            assert time.monotonic() < deadline, "the other process never wrote its table"
            time.sleep(0.05)
        theirs = eng.to_pandas(eng.table(f"from_{other}"))
        assert len(theirs) == 1000 and set(theirs["who"]) == {other}, theirs.head()
        eng.close()
        print("ok", me)
    """)
    run_dir.mkdir(parents=True)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(run_dir), me, other], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=os.environ)
             for me, other in (("a", "b"), ("b", "a"))]
    results = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
        assert out.startswith("ok")
    assert sorted(p.name for p in (run_dir / "tables").iterdir()) == ["from_a.parquet", "from_b.parquet"]
    assert not list(run_dir.glob("*.duckdb*")) and not (run_dir / ".duckdb_tmp").exists()


def test_remove_tables_drops_parquet_and_json_and_ignores_missing_ones(tmp_path):
    from crmlib.status import record_warning, recorded_reason

    with Engine(tmp_path / "run") as eng:
        eng.write_table("kept", pd.DataFrame({"a": [1]}))
        eng.write_table("stale", pd.DataFrame({"a": [1]}))
        eng.write_json("stale", {"b": 2})
        eng.remove_tables("stale", "never_written")
        assert eng.list_tables() == ["kept"] and not (eng.tables_dir / "stale.json").exists()
        record_warning(eng, "roi", "mmm", "too few weeks")
        assert recorded_reason(eng, "roi", "budget", "mmm") == "too few weeks"
        assert recorded_reason(eng, "roi", "budget") is None and recorded_reason(eng, "ingest", "mmm") is None
