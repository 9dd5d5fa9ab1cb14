"""End to end: `crm run` on params/ci.yaml over freshly generated sample data (papermill, all stages)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.pipeline


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory) -> dict:
    """Generate the CI sample in a temp project layout and run the whole pipeline on it once."""
    from crmlib.sample import generate_sample

    base = tmp_path_factory.mktemp("ci")
    (base / "params").mkdir()
    shutil.copy(ROOT / "params" / "ci.yaml", base / "params" / "ci.yaml")
    generate_sample(base / "data" / "ci", customers=400, seed=7)
    proc = subprocess.run([sys.executable, "-m", "crmlib", "run", "--params", str(base / "params" / "ci.yaml"),
                           "--run-id", "ci-run"], capture_output=True, text=True, timeout=1200, cwd=base)
    run_dir = Path(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else None
    return {"proc": proc, "run_dir": run_dir, "base": base}


def test_run_succeeds_and_prints_run_dir(ci_run):
    proc = ci_run["proc"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ci_run["run_dir"].is_dir() and ci_run["run_dir"].name == "ci-run"
    lines = proc.stdout.strip().splitlines()
    assert sum(bool(re.match(r"\[\d/4\] \w+: ", line)) for line in lines) == 4


def test_manifest_and_reports(ci_run):
    run_dir = ci_run["run_dir"]
    m = json.loads((run_dir / "manifest.json").read_text())
    assert m["status"] == "ok"
    assert {s["stage"]: s["status"] for s in m["stages"]} == {
        "ingest": "ok", "segmentation": "ok", "roi": "ok", "ab_tests": "ok"}
    for s in m["stages"]:
        assert (run_dir / s["html"]).exists() and s["duration_s"] > 0
    for table in ("customers", "identity_map", "quarantine", "orders", "rfm", "clv", "attribution", "roi",
                  "mmm", "ab_results"):
        assert (run_dir / "tables" / f"{table}.parquet").exists(), table
    assert (run_dir / "tables" / "data_quality.json").exists()
    assert (run_dir / "tables" / "clv_model.json").exists()
    assert m["row_counts"]["customers"] > 0
    index = (run_dir.parent / "index.html").read_text()
    assert "ci-run/index.html" in index


def test_every_row_accounted_for(ci_run):
    q = json.loads((ci_run["run_dir"] / "tables" / "data_quality.json").read_text())["sources"]
    assert q, "no sources in data_quality.json"
    for name, s in q.items():
        assert s["rows_read"] == s["rows_loaded"] + s["rows_quarantined"] + s["duplicates_dropped"], name
        assert s["rows_read"] > 0, name


def test_contract_columns(ci_run):
    tables = ci_run["run_dir"] / "tables"
    expect = {
        "customers": ["customer_key", "first_order_ts", "last_order_ts", "orders", "revenue", "sources", "tags"],
        "identity_map": ["source", "source_customer_id", "customer_key", "match_rule"],
        "quarantine": ["source", "row_number", "reason", "raw"],
        "rfm": ["customer_key", "recency_days", "frequency", "monetary", "r_score", "f_score", "m_score",
                "segment"],
        "clv": ["customer_key", "frequency", "recency", "T", "p_alive", "expected_purchases",
                "expected_avg_value", "clv"],
        "attribution": ["model", "channel", "conversions", "revenue"],
        "roi": ["model", "channel", "cost", "revenue", "roi", "roas"],
        "mmm": ["channel", "spend", "roas", "roas_low", "roas_high", "mroas", "identified"],
        "ab_results": ["experiment_id", "metric", "variant", "n", "mean", "control_mean", "abs_lift",
                       "abs_ci_low", "abs_ci_high", "rel_lift", "rel_ci_low", "rel_ci_high", "p_value",
                       "p_adjusted", "p_value_sequential", "srm_p_value", "verdict", "method"],
    }
    for table, cols in expect.items():
        df = pd.read_parquet(tables / f"{table}.parquet")
        missing = set(cols) - set(df.columns)
        assert not missing, f"{table} lacks {missing}"
    model = json.loads((tables / "clv_model.json").read_text())
    assert {"r", "alpha", "a", "b", "log_likelihood"} <= set(model["bgnbd"])
    assert {"p", "q", "v"} <= set(model["gamma_gamma"])
    assert model["time_unit"] and model["calibration_end"]


def _identifying(value: str) -> bool:
    """Long enough to identify someone: 5+ characters, or a 2+ character Chinese name."""
    return len(value) >= 5 or (len(value) >= 2 and any("\u4e00" <= ch <= "\u9fff" for ch in value))


def test_no_pii_in_reports_or_customers(ci_run):
    """No raw name, email or phone of any contact appears in any HTML report or in customers.parquet."""
    data = ci_run["base"] / "data" / "ci"
    needles: set[str] = set()
    for path in data.glob("*"):
        if path.suffix == ".csv":
            enc = "gbk" if "store" in path.name else "utf-8"
            frame = pd.read_csv(path, dtype=str, encoding=enc, encoding_errors="replace")
        elif path.suffix == ".parquet":
            frame = pd.read_parquet(path).astype(str)
        else:
            continue
        for col in frame.columns:
            if col == "product_name":  # the catalogue's product names (shown on the pages) are not personal data
                continue
            if any(k in col.lower() for k in ("email", "phone", "name", "mobile")) or col in ("姓名", "手机"):
                needles |= {v.strip() for v in frame[col].dropna() if _identifying(v.strip())}
    assert len(needles) > 50, "the PII check found too few identifiers to be meaningful"
    run_dir = ci_run["run_dir"]
    for html in run_dir.glob("*.html"):
        text = html.read_text(encoding="utf-8")
        leaked = [n for n in needles if n in text]
        assert not leaked, f"{html.name} shows PII: {leaked[:3]}"
    customers = pd.read_parquet(run_dir / "tables" / "customers.parquet").astype(str).to_csv()
    assert not [n for n in needles if n in customers]
