"""Broken real-world exports through ``crm run`` and ``crm validate``, as a scheduler runs them: a clear
message that names the file and the fix, the documented exit code, and never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.pipeline

GOOD_ORDERS = "customer,ts,amount\nA1,2026-01-02 10:00,12.5\nA2,2026-01-03 11:00,20\n"


def _crm(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, CRM_SCRATCH_DIR=str(cwd / "scratch"), CRM_PII_SALT="test-salt")
    return subprocess.run([sys.executable, "-m", "crmlib", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env=env)


def _project(tmp_path: Path, orders: bytes, *, source_extra: str = "") -> Path:
    (tmp_path / "orders.csv").write_bytes(orders)
    params = tmp_path / "p.yaml"
    params.write_text(textwrap.dedent(f"""
        run: {{name: broken, as_of: "2026-06-30", output_dir: reports}}
        sources:
          - name: shop
            kind: orders
            path: orders.csv
            columns: {{customer: source_customer_id, ts: order_ts}}
        """) + textwrap.indent(source_extra, " " * 4), encoding="utf-8")
    return params


def _assert_plain_failure(res: subprocess.CompletedProcess, code: int, words: list[str]) -> str:
    """The documented exit code, no traceback, and every word of the fix in the output; returns the output."""
    out = res.stdout + res.stderr
    assert res.returncode == code, out
    assert "Traceback" not in out
    for word in words:
        assert word in out, f"{word!r} missing from:\n{out}"
    return out


CASES = {
    # name: (file bytes, extra source keys, words the message must hold)
    "semicolon file without delimiter": (
        "customer;ts;amount\nA1;2026-01-02 10:00;12,50\n".encode(), "", ['delimiter: ";"']),
    "GBK file declared UTF-8": (
        "customer,ts,amount,城市\nA1,2026-01-02 10:00,12.5,上海\n".encode("gbk"), "", ["encoding", "gb"]),
    "Parquet file named .csv": (b"PAR1" + b"\0" * 64 + b"PAR1", "", ["format: parquet"]),
    "missing required column": (b"customer,ts,total\nA1,2026-01-02 10:00,12.5\n", "", ["amount", "total"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_broken_export_fails_the_run_with_the_fix(tmp_path: Path, case: str):
    data, extra, words = CASES[case]
    params = _project(tmp_path, data, source_extra=extra)
    out = _assert_plain_failure(_crm("run", "--params", str(params), cwd=tmp_path), 1, words)
    assert "orders.csv" in out
    # the run is published, marked failed, and holds no copy of the raw file
    runs = [p for p in (tmp_path / "reports").iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(runs) == 1 and '"status": "failed"' in (runs[0] / "manifest.json").read_text(encoding="utf-8")
    assert not list((tmp_path / "reports").rglob("*.utf8.csv"))
    assert not list((tmp_path / "reports").rglob("*.duckdb"))


@pytest.mark.parametrize("case", list(CASES))
def test_validate_reports_the_same_problem_without_running(tmp_path: Path, case: str):
    data, extra, words = CASES[case]
    params = _project(tmp_path, data, source_extra=extra)
    _assert_plain_failure(_crm("validate", "--params", str(params), cwd=tmp_path), 2, words)
    assert not (tmp_path / "reports").exists()


def test_decimal_commas_are_quarantined_not_misread(tmp_path: Path):
    params = _project(tmp_path, "customer;ts;amount\nA1;2026-01-02 10:00;12,50\nA2;2026-01-03 10:00;0,99\n"
                                "A3;2026-01-04 10:00;7\n".encode(), source_extra='delimiter: ";"\n')
    res = _crm("run", "--params", str(params), "--only", "ingest", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    run_dir = Path(res.stdout.strip().splitlines()[-1])
    import pandas as pd

    orders = pd.read_parquet(run_dir / "tables" / "orders.parquet")
    quarantine = pd.read_parquet(run_dir / "tables" / "quarantine.parquet")
    assert orders["amount"].tolist() == [7.0]
    assert len(quarantine) == 2 and quarantine["reason"].str.contains("decimal").all()


def test_good_file_after_a_broken_one_runs(tmp_path: Path):
    params = _project(tmp_path, b"customer,ts,total\nA1,2026-01-02 10:00,12.5\n")
    assert _crm("run", "--params", str(params), "--only", "ingest", cwd=tmp_path).returncode == 1
    (tmp_path / "orders.csv").write_text(GOOD_ORDERS, encoding="utf-8")
    res = _crm("run", "--params", str(params), "--only", "ingest", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
