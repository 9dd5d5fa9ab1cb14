"""Fault tests of ``crm run`` on a small sample (300 customers): SIGKILL at several points, SIGTERM, SIGINT and
two runs started together. After each, nothing under the output folder holds an email, phone or name from the
inputs, no copy of raw input (DuckDB file, transcoded CSV, scratch folder) is there, and the next run succeeds
and removes what the killed run left behind.

A read-only output folder and a full disk are tested in ``test_cli.py`` (simulated there: the tests run as
root, for whom chmod does not block writes); two processes with Engines on one run directory in
``test_engine.py``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.pipeline

#: Polling for a point in the run gives up after this long (a hung run fails the test instead of hanging it).
_WAIT_LIMIT_S = 900


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> dict:
    """A 300-customer sample, a params file over it and an environment with its own scratch folder."""
    base = tmp_path_factory.mktemp("faults")
    subprocess.run([sys.executable, "-m", "crmlib", "sample", "--out", str(base / "data"), "--customers", "300"],
                   check=True, capture_output=True, timeout=300)
    params = (ROOT / "params" / "sample.yaml").read_text(encoding="utf-8").replace("../data/sample/", "../data/")
    (base / "params").mkdir()
    (base / "params" / "p.yaml").write_text(params, encoding="utf-8")
    env = dict(os.environ, CRM_SCRATCH_DIR=str(base / "scratch"), CRM_PII_SALT="fault-test-salt-91c2",
               PYTHONUNBUFFERED="1")
    return {"base": base, "params": base / "params" / "p.yaml", "output": base / "reports",
            "scratch": base / "scratch", "env": env, "needles": _pii_needles(base / "data")}


def _identifying(value: str) -> bool:
    """Long enough to identify someone: 5+ characters, or a 2+ character Chinese name."""
    return len(value) >= 5 or (len(value) >= 2 and any("\u4e00" <= ch <= "\u9fff" for ch in value))


def _pii_needles(data: Path) -> set[str]:
    """Every email, phone and name in the input files."""
    frames = [pd.read_csv(data / "crm_contacts.csv", dtype=str),
              pd.read_json(data / "eshop_accounts.jsonl", lines=True, dtype=str),
              pd.read_csv(data / "store_cards.csv", dtype=str, encoding="gbk")]
    needles: set[str] = set()
    for frame in frames:
        for col in frame.columns:
            if col in ("name", "email", "phone", "mobile", "real_name", "姓名", "手机"):
                values = frame[col].dropna().astype(str).str.strip()
                needles |= {v for v in values if v not in ("None", "nan") and _identifying(v)}
                # a phone is also stored in other spellings (+86 ..., E.164): its last 11 digits are in all
                if col in ("phone", "mobile", "手机"):
                    needles |= {d[-11:] for d in (re.sub(r"\D", "", v) for v in values) if len(d) >= 11}
    assert len(needles) > 300, "too few identifiers for the PII check to mean anything"
    return needles


def _assert_no_raw_input_under(output: Path, needles: set[str]) -> None:
    """No file under ``output`` holds an identifier (raw bytes, and Parquet decoded: it is compressed), and
    no engine database, transcoded copy or scratch folder is there."""
    assert not [p for p in output.rglob("*") if p.name.endswith((".duckdb", ".duckdb.wal", ".utf8.csv"))
                or p.name in (".ingest_tmp", ".duckdb_tmp", "duckdb_tmp") or p.name.startswith("crmlib-")]
    for path in (p for p in output.rglob("*") if p.is_file()):
        texts = [path.read_bytes().decode("utf-8", "replace")]
        if path.suffix == ".parquet":
            try:
                texts.append(pd.read_parquet(path).astype(str).to_csv())
            except Exception:  # a file cut short by the kill: its raw bytes were searched above
                pass
        leaked = sorted(n for n in needles if any(n in t for t in texts))
        assert not leaked, f"{path.relative_to(output)} holds input PII: {leaked[:3]}"


class _Run:
    """``crm run`` in its own process group, its stdout in a file to poll."""

    def __init__(self, project: dict, *args: str, name: str) -> None:
        self.stdout = project["base"] / f"{name}.out"
        self.stderr = project["base"] / f"{name}.err"
        with open(self.stdout, "w") as out, open(self.stderr, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "crmlib", "run", "--params", str(project["params"]), *args],
                stdout=out, stderr=err, env=project["env"], cwd=project["base"], start_new_session=True)

    def out(self) -> str:
        return self.stdout.read_text(encoding="utf-8")

    def err(self) -> str:
        return self.stderr.read_text(encoding="utf-8")

    def wait_until(self, condition, what: str) -> None:
        deadline = time.monotonic() + _WAIT_LIMIT_S
        while not condition():
            assert self.proc.poll() is None, f"the run ended before {what}: {self.out()} {self.err()}"
            assert time.monotonic() < deadline, f"never reached {what}"
            time.sleep(0.02)

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def signal_group(self, signum: int) -> list[psutil.Process]:
        """Send ``signum`` to the run's process group; return the processes it had started (the kernels)."""
        kernels = self.descendants()
        os.killpg(self.proc.pid, signum)
        return kernels

    def finish(self) -> int:
        return self.proc.wait(timeout=_WAIT_LIMIT_S)


def _kernel_engine_open(project: dict) -> bool:
    """A kernel has opened its Engine: its database exists in a scratch folder of the run."""
    return any(project["scratch"].glob("crmlib-run-*/crmlib-*/engine.duckdb"))


def _wait_gone(processes: list[psutil.Process]) -> None:
    _gone, alive = psutil.wait_procs(processes, timeout=60)
    assert not alive, f"processes outlived the run: {alive}"


def _published_runs(project: dict) -> list[str]:
    return sorted(p.name for p in project["output"].iterdir() if p.is_dir() and not p.name.startswith("."))


_KILL_POINTS = {
    "during ingest": lambda run, project: (
        "[1/4]" not in run.out() and _kernel_engine_open(project)),
    "during segmentation": lambda run, project: (
        "[1/4] ingest: ok" in run.out() and "[2/4]" not in run.out() and _kernel_engine_open(project)),
    "while publishing": lambda run, project: "[4/4] ab_tests" in run.out(),
}


@pytest.mark.parametrize("point", list(_KILL_POINTS))
def test_sigkill_leaves_no_pii_and_the_next_run_cleans_up_and_succeeds(project: dict, point: str):
    before = _published_runs(project) if project["output"].exists() else []
    run = _Run(project, name=f"kill-{point.replace(' ', '-')}")
    run.wait_until(lambda: _KILL_POINTS[point](run, project), point)
    kernels = run.signal_group(signal.SIGKILL)
    run.finish()
    _wait_gone(kernels)  # a kernel notices its runner died and exits too

    _assert_no_raw_input_under(project["output"], project["needles"])
    leftovers = [p.name for p in project["output"].glob(".tmp-*")] + [p.name for p in project["scratch"].glob("crmlib-*")]

    after = _Run(project, "--only", "ingest", name=f"after-{point.replace(' ', '-')}")
    assert after.finish() == 0, after.out() + after.err()
    assert "Traceback" not in after.err()
    if leftovers:
        assert "removed what killed runs left behind" in after.out()
    assert not list(project["output"].glob(".tmp-*"))
    assert not list(project["scratch"].glob("crmlib-*")), "scratch folders of the killed run are still there"
    assert set(before) < set(_published_runs(project))  # nothing published earlier was lost
    _assert_no_raw_input_under(project["output"], project["needles"])


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_sigint_stop_the_run_cleanly(project: dict, signum: int, code: int):
    project["output"].mkdir(exist_ok=True)
    before = _published_runs(project)
    run = _Run(project, name=signal.Signals(signum).name)
    run.wait_until(lambda: "[1/4] ingest: ok" in run.out() and _kernel_engine_open(project), "segmentation")
    kernels = run.signal_group(signum)
    assert run.finish() == code
    err = run.err().strip().splitlines()
    assert len(err) == 1 and "Traceback" not in run.err() and signal.Signals(signum).name in err[0], run.err()
    _wait_gone(kernels)
    assert not list(project["output"].glob(".tmp-*")), "the unfinished run folder was left behind"
    assert not list(project["scratch"].glob("crmlib-*")), "the run's scratch folder was left behind"
    assert _published_runs(project) == before
    _assert_no_raw_input_under(project["output"], project["needles"])


def test_two_runs_started_together_one_runs_the_other_is_refused(project: dict):
    project["output"].mkdir(exist_ok=True)
    before = _published_runs(project)
    runs = [_Run(project, name=f"together-{i}") for i in (1, 2)]
    deadline = time.monotonic() + _WAIT_LIMIT_S
    while all(r.proc.poll() is None for r in runs):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    first_done = next(r for r in runs if r.proc.poll() is not None)
    other = next(r for r in runs if r is not first_done)
    # the refused run ends while the other is still working: it did not wait for the lock
    assert first_done.proc.returncode == 3 and other.proc.poll() is None
    assert "another crm run" in first_done.err() and "Traceback" not in first_done.err()
    assert first_done.out() == ""
    assert other.finish() == 0, other.out() + other.err()
    assert other.err() == "", "a successful run writes nothing to stderr (the salt is set)"
    published = _published_runs(project)
    assert set(before) < set(published) and len(published) == len(before) + 1
    new = (project["output"] / (set(published) - set(before)).pop())
    manifest = json.loads((new / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["status"] in ("ok", "ok_with_warnings")
    assert {s["stage"]: s["status"] for s in manifest["stages"]}.keys() == {"ingest", "segmentation", "roi",
                                                                          "ab_tests"}
    assert all(s["status"] != "skipped" for s in manifest["stages"])
    assert not list(project["output"].glob(".tmp-*")) and not list(project["scratch"].glob("crmlib-*"))
    _assert_no_raw_input_under(project["output"], project["needles"])
