"""Tiny data sets end to end: a model step the data cannot support degrades, the run does not die.

Each case is a folder of CSV files plus a params file, run once through the whole pipeline
(:func:`crmlib.runner.run_pipeline`, papermill). A case combines conditions that do not interfere, so that
three runs cover the issue's list:

* ``one_customer``: one customer with three purchases, touched by two channels, one week of spend, no
  surveys and no experiments;
* ``ten_once``: ten customers who bought once each, touchpoints of one channel and no spend, a healthy
  experiment beside one whose units are all in one arm, survey rows without an answer;
* ``refunded``: every order refunded (net revenue 0 for everyone), spend but no touchpoints.

For each: no stage failed; every step that could not be computed left its plain-words reason in
``warnings.jsonl`` and the manifest; the tables that can be written exist.
"""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from crmlib.status import read_warnings

pytestmark = pytest.mark.pipeline

AS_OF = "2026-06-30"


def _csv(path: Path, header: str, rows: list[str]) -> None:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")


def _contacts(folder: Path, ids: list[str]) -> None:
    _csv(folder / "contacts.csv", "source_customer_id,consent_marketing", [f"{i},Y" for i in ids])


def _one_customer(folder: Path) -> list[tuple[str, str]]:
    _contacts(folder, ["C1"])
    _csv(folder / "orders.csv", "order_id,source_customer_id,order_ts,amount",
         ["O1,C1,2026-03-02 10:00,50.0", "O2,C1,2026-04-10 11:00,80.0", "O3,C1,2026-06-01 12:00,30.0"])
    _csv(folder / "touchpoints.csv", "touch_ts,channel,campaign_id,source_customer_id",
         ["2026-05-27 09:00,email,EM1,C1", "2026-05-30 09:00,social,SO1,C1"])
    _csv(folder / "spend.csv", "date,channel,cost",
         [f"2026-05-{d:02d},{ch},{c}" for d in range(25, 32) for ch, c in (("email", 10.0), ("social", 25.0))])
    return [("orders", "orders.csv"), ("touchpoints", "touchpoints.csv"), ("spend", "spend.csv")]


def _ten_once(folder: Path) -> list[tuple[str, str]]:
    ids = [f"C{i:02d}" for i in range(1, 11)]
    _contacts(folder, ids)
    _csv(folder / "orders.csv", "order_id,source_customer_id,order_ts,amount",
         [f"O{i},{c},2026-05-{i + 5:02d} 10:00,{20 + 7 * i}.0" for i, c in enumerate(ids, start=1)])
    _csv(folder / "touchpoints.csv", "touch_ts,channel,source_customer_id",
         [f"2026-05-{i + 3:02d} 09:00,email,{c}" for i, c in enumerate(ids, start=1)])
    _csv(folder / "experiments.csv", "experiment_id,source_customer_id,variant,assigned_ts",
         # C07-C10 are assigned after their order: they do not convert in their window
         [f"healthy,{c},{'control' if i % 2 else 'treatment'},2026-05-{1 + i % 3 if i <= 6 else 20:02d} 08:00"
          for i, c in enumerate(ids, start=1)]
         + [f"one_arm,{c},treatment,2026-05-02 08:00" for c in ids])
    _csv(folder / "surveys.csv", "source_customer_id,response_ts,nps_score,csat,comment",
         [f"{c},2026-06-10 12:00,,,no answer" for c in ids[:4]])
    return [("orders", "orders.csv"), ("touchpoints", "touchpoints.csv"), ("experiments", "experiments.csv"),
            ("surveys", "surveys.csv")]


def _refunded(folder: Path) -> list[tuple[str, str]]:
    ids = [f"C{i}" for i in range(1, 6)]
    _contacts(folder, ids)
    rows = []
    for i, c in enumerate(ids, start=1):
        rows.append(f"O{i},{c},2026-04-{i + 1:02d} 10:00,{40 + 10 * i}.0,completed")
        rows.append(f"R{i},{c},2026-04-{i + 8:02d} 10:00,-{40 + 10 * i}.0,refunded")
    _csv(folder / "orders.csv", "order_id,source_customer_id,order_ts,amount,status", rows)
    _csv(folder / "spend.csv", "date,channel,cost",
         [f"2026-04-{d:02d},{ch},{c}" for d in range(1, 22) for ch, c in (("search", 30.0), ("display", 12.0))])
    return [("orders", "orders.csv"), ("spend", "spend.csv")]


CASES = {"one_customer": _one_customer, "ten_once": _ten_once, "refunded": _refunded}

_ID_SOURCE = {"orders", "touchpoints", "experiments", "surveys"}


def write_case(base: Path, case: str) -> Path:
    """Write the case's files and params under ``base``; return the params path.

    Reports go to ``base/reports``. The identity method is deterministic (no Splink model to train on
    a handful of contacts).
    """
    data = base / "data"
    data.mkdir(parents=True, exist_ok=True)
    sources = CASES[case](data)
    lines = ["""  - name: crm
    kind: contacts
    path: data/contacts.csv"""]
    for kind, file in sources:
        line = f"""  - name: {Path(file).stem}
    kind: {kind}
    path: data/{file}"""
        if kind in _ID_SOURCE:
            line += "\n    id_source: crm"
        lines.append(line)
    params = base / "params.yaml"
    params.write_text(textwrap.dedent(f"""\
        run:
          name: {case}
          as_of: "{AS_OF}"
          timezone: Asia/Shanghai
          currency: CNY
          output_dir: reports
        ingest:
          identity: {{method: deterministic}}
        roi:
          mmm: {{bootstrap: 20}}
        ab_tests:
          experiments:
            - id: healthy
              weights: {{control: 0.5, treatment: 0.5}}
        sources:
        """) + "\n".join(lines) + "\n", encoding="utf-8")
    return params


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """``run(case)``: the case's run directory and manifest, each case built and run once per module."""
    from crmlib.runner import run_pipeline

    done: dict[str, tuple[Path, dict]] = {}

    def get(case: str) -> tuple[Path, dict]:
        if case not in done:
            params = write_case(tmp_path_factory.mktemp(case), case)
            result = run_pipeline(params, run_id=f"{case}-run", out=io.StringIO(), err=io.StringIO())
            manifest = json.loads((result.run_dir / "manifest.json").read_text(encoding="utf-8"))
            done[case] = (result.run_dir, manifest)
        return done[case]

    return get


def _statuses(manifest: dict) -> dict[str, str]:
    return {s["stage"]: s["status"] for s in manifest["stages"]}


def _warned(run_dir: Path, manifest: dict, stage: str, step: str, *words: str) -> str:
    """The warning of ``step`` in warnings.jsonl, checked to be listed in the manifest under its stage."""
    found = [w for w in read_warnings(run_dir, stage) if w["step"] == step]
    assert found, f"no warning for {stage} / {step}: {read_warnings(run_dir)}"
    message = found[0]["message"]
    for word in words:
        assert word in message, message
    listed = next(s for s in manifest["stages"] if s["stage"] == stage)
    assert {"step": step, "message": message} in [{"step": w["step"], "message": w["message"]}
                                                  for w in listed.get("warnings", [])], listed
    assert listed["status"] == "ok_with_warnings"
    return message


def _tables(run_dir: Path) -> set[str]:
    return {p.name for p in (run_dir / "tables").iterdir()}


def test_one_customer(run):
    run_dir, manifest = run("one_customer")
    assert _statuses(manifest) == {"ingest": "ok", "segmentation": "ok_with_warnings", "roi": "ok_with_warnings",
                                   "ab_tests": "skipped"}
    _warned(run_dir, manifest, "segmentation", "clusters", "at least 2 customers", "1 customer")
    _warned(run_dir, manifest, "segmentation", "BG/NBD purchase model", "did not converge", "1 customer")
    _warned(run_dir, manifest, "segmentation", "churn risk tiers", "P(alive)")
    _warned(run_dir, manifest, "roi", "media-mix model", "at least 26 complete weeks")
    _warned(run_dir, manifest, "roi", "budget reallocation", "media-mix model")
    tables = _tables(run_dir)
    assert {"rfm.parquet", "loyalty.parquet", "audiences.parquet", "attribution.parquet", "roi.parquet"} <= tables
    # nothing per customer can be said without the purchase model, and no stale model file stands in for it
    assert not {"clv.parquet", "clv_model.json", "clusters.parquet", "mmm.parquet", "roi_budget.parquet"} & tables
    # two channels touched the one journey: attribution, Markov included, credits its one order
    attribution = pd.read_parquet(run_dir / "tables" / "attribution.parquet")
    assert attribution.groupby("model")["conversions"].sum().round(9).eq(1.0).all()
    assert {"markov", "shapley"} <= set(attribution["model"])
    html = (run_dir / "02_segmentation.html").read_text(encoding="utf-8")
    assert "BG/NBD purchase model: not computed" in html


def test_ten_customers_who_bought_once(run):
    run_dir, manifest = run("ten_once")
    assert set(_statuses(manifest).values()) <= {"ok", "ok_with_warnings"}
    _warned(run_dir, manifest, "segmentation", "BG/NBD purchase model", "bought on one day only", "10 customer")
    _warned(run_dir, manifest, "segmentation", "NPS by segment", "none with a score")
    _warned(run_dir, manifest, "segmentation", "CSAT by segment", "none with a score")
    _warned(run_dir, manifest, "roi", "Markov attribution", "at least two channels")
    _warned(run_dir, manifest, "roi", "Shapley attribution", "at least two channels")
    _warned(run_dir, manifest, "roi", "media-mix model", "no marketing cost")
    _warned(run_dir, manifest, "ab_tests", "experiment one_arm", "one arm only", "'treatment'")
    tables = _tables(run_dir)
    assert {"rfm.parquet", "clusters.parquet", "loyalty.parquet", "attribution.parquet", "roi.parquet"} <= tables
    assert "clv.parquet" not in tables
    # the healthy experiment is analysed beside the one-arm one
    results = pd.read_parquet(run_dir / "tables" / "ab_results.parquet")
    assert set(results["experiment_id"]) == {"healthy"}
    assert set(results.loc[results["metric"] == "conversion", "n"]) == {5}
    # rule-based attribution still credits the one channel with all ten first orders
    attribution = pd.read_parquet(run_dir / "tables" / "attribution.parquet")
    assert set(attribution["channel"]) == {"email"} and not {"markov", "shapley"} & set(attribution["model"])
    assert attribution.groupby("model")["conversions"].sum().round(9).eq(10.0).all()
    html = (run_dir / "04_ab_tests.html").read_text(encoding="utf-8")
    assert "not analysed" in html and "one arm only" in html


def test_every_order_refunded(run):
    run_dir, manifest = run("refunded")
    assert _statuses(manifest) == {"ingest": "ok", "segmentation": "ok_with_warnings", "roi": "ok_with_warnings",
                                   "ab_tests": "skipped"}
    _warned(run_dir, manifest, "segmentation", "BG/NBD purchase model", "5 customer")
    _warned(run_dir, manifest, "roi", "journeys and attribution", "no touchpoints")
    _warned(run_dir, manifest, "roi", "media-mix model", "this data has 3")
    rfm = pd.read_parquet(run_dir / "tables" / "rfm.parquet")
    assert len(rfm) == 5 and (rfm["monetary"] <= 0).all()
    assert {"rfm.parquet", "clusters.parquet", "loyalty.parquet", "audiences.parquet"} <= _tables(run_dir)
    assert not {"attribution.parquet", "roi.parquet", "mmm.parquet"} & _tables(run_dir)
