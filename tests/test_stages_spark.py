"""Parity of the segmentation, ROI and A/B stages: their engine functions on DuckDB and on Spark (``local[2]``)
over the same ingest tables of the CI sample give the same tables.

The ingest tables come from the CI sample's DuckDB run (:func:`tests.spark_support.ci_duckdb_run`); the
later stages' tables are removed from the copy, so each engine computes every segmentation, ROI and A/B
table itself, stage after stage, as the notebooks call them (``rfm_stage`` ... ``recommendations_stage``,
``run_roi``, ``ab_results``). Every table and JSON document the stages write must then be equal: exact
counts, keys, integers, strings and timestamps; floats to 1e-9 relative. Only timings differ, and the
standard errors of the CLV models (see :data:`LOOSE_KEYS`).

The steps rewritten for Spark are also compared directly: the journeys (ordered step arrays and time-decay
arrays, by channel and by campaign), the latest survey answer per customer and the holdouts' daily spend.

Spark needs a Java 17 or 21 runtime: without one the ``spark_session`` fixture fails, and so do these tests.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.spark_support import assert_same_table, both_engines, table_frame

#: Row keys of the stage tables, for readable failures (other tables are aligned on all their columns).
KEYS = {
    "rfm": ["customer_key"],
    "clv": ["customer_key"],
    "clusters": ["customer_key"],
    "loyalty": ["customer_key"],
    "churn_tiers": ["churn_risk"],
    "recommendations": ["customer_key", "list", "rank"],
    "also_bought": ["product_id", "rank"],
    "segments": ["segment"],
    "attribution": ["model", "channel"],
    "roi": ["model", "channel"],
    "mmm": ["channel"],
}
#: JSON keys that measure time, not results.
TIMING_KEYS = ("fit_seconds", "seconds", "duration_s", "elapsed_s")
#: JSON keys compared to 1e-6 relative: the CLV models' standard errors come from a numerical Hessian of
#: the likelihood (finite differences), which turns last-bit differences of the per-customer inputs (sums
#: added in another order) into differences near 1e-8; the fitted parameters themselves agree to 1e-9.
LOOSE_KEYS = {"standard_errors": 1e-6}


def _ingest_tables() -> tuple[str, ...]:
    from crmlib.runner import STAGES

    return STAGES["ingest"].writes


@pytest.fixture(scope="module")
def params(ci_sample) -> dict:
    from crmlib.params import load_params

    return load_params(ci_sample / "params" / "ci.yaml")


@pytest.fixture(scope="module")
def ingest_run(ci_duckdb_run, tmp_path_factory) -> Path:
    """A run folder holding only what ingest wrote (its tables and JSON documents) in the DuckDB run."""
    source = ci_duckdb_run["run_dir"] / "tables"
    run_dir = tmp_path_factory.mktemp("ingest-only")
    (run_dir / "tables").mkdir()
    for name in _ingest_tables():
        if (source / f"{name}.parquet").exists():
            shutil.copy(source / f"{name}.parquet", run_dir / "tables")
    for name in ("data_quality", "as_of"):
        if (source / f"{name}.json").exists():
            shutil.copy(source / f"{name}.json", run_dir / "tables")
    return run_dir


def _run_stages(engine: Any, params: dict) -> None:
    """The stage calls of notebooks 02, 03 and 04, in run order (ROI reads CLV, A/B tests read ROI)."""
    from crmlib.abtest import stage as ab
    from crmlib.roi import stage as roi
    from crmlib.segmentation import feedback as fb
    from crmlib.segmentation import stage as seg

    for step in (seg.rfm_stage, seg.segments_stage, seg.clusters_stage, seg.clv_stage, seg.clv_by_segment,
                 seg.churn_stage, seg.loyalty_stage, seg.surveys_stage, fb.feedback_stage, seg.audiences_stage,
                 seg.recommendations_stage, roi.run_roi, ab.ab_results):
        step(engine, params)


@pytest.fixture(scope="module")
def stage_runs(ingest_run, params, spark_session, tmp_path_factory) -> dict[str, Path]:
    """The three stages run on each engine, each on its own copy of the ingest tables."""
    workdir = tmp_path_factory.mktemp("stages")
    with both_engines(ingest_run, workdir=workdir) as (duck, spark):
        assert (duck.kind, spark.kind) == ("duckdb", "spark")
        for engine in (duck, spark):
            _run_stages(engine, params)
        return {"duckdb": duck.run_dir, "spark": spark.run_dir}


def _written(run_dir: Path) -> dict[str, Path]:
    """The files of ``tables/`` the stages wrote (the ingest inputs left out), by file name."""
    inputs = {f"{name}.parquet" for name in _ingest_tables()} | {"data_quality.json", "as_of.json"}
    return {p.name: p for p in (run_dir / "tables").iterdir() if p.name not in inputs}


def _assert_same_json(a: Any, b: Any, where: str, rtol: float = 1e-9) -> None:
    """Equal JSON documents: numbers to ``rtol`` relative, everything else exactly; timings skipped."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert sorted(a) == sorted(b), f"{where}: keys differ: {sorted(set(a) ^ set(b))}"
        for key in a:
            if key in TIMING_KEYS:
                continue
            _assert_same_json(a[key], b[key], f"{where}.{key}", LOOSE_KEYS.get(key, rtol))
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{where}: {len(a)} items on DuckDB, {len(b)} on Spark"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_json(x, y, f"{where}[{i}]", rtol)
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        both_nan = isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
        assert both_nan or math.isclose(a, b, rel_tol=rtol, abs_tol=1e-12), f"{where}: DuckDB {a!r}, Spark {b!r}"
    else:
        assert a == b, f"{where}: DuckDB {a!r}, Spark {b!r}"


def test_stages_write_the_same_tables_on_both_engines(stage_runs):
    duck, spark = _written(stage_runs["duckdb"]), _written(stage_runs["spark"])
    assert sorted(duck) == sorted(spark)
    # the stages' main products are among them, so an empty comparison cannot pass
    for name in ("rfm", "clv", "segments", "attribution", "roi", "mmm", "funnel", "ab_results", "ab_srm"):
        assert f"{name}.parquet" in duck, name
    for file_name, path in sorted(duck.items()):
        if path.suffix == ".json":
            _assert_same_json(json.loads(path.read_text(encoding="utf-8")),
                              json.loads(spark[file_name].read_text(encoding="utf-8")), file_name)
            continue
        name = file_name.removesuffix(".parquet")
        a, b = table_frame(path), table_frame(spark[file_name])
        assert_same_table(a, b, KEYS.get(name, ()), name=name)


def test_audience_files_equal(stage_runs):
    folders = {kind: run_dir / "audiences" for kind, run_dir in stage_runs.items()}
    names = sorted(p.name for p in folders["duckdb"].glob("*.parquet"))
    assert names, "the segmentation stage wrote no audience files"
    assert names == sorted(p.name for p in folders["spark"].glob("*.parquet"))
    for name in names:
        assert_same_table(pd.read_parquet(folders["duckdb"] / name), pd.read_parquet(folders["spark"] / name),
                          ["customer_key"], name=f"audiences/{name}")


@pytest.mark.parametrize("label", ["channel", "campaign"])
def test_journeys_equal(ingest_run, spark_session, label):
    # the ordered step arrays and the per-position decay arrays: Spark has no ordered collect, so both
    # engines sort arrays of structs; a path is compared as the tuple of its labels
    from crmlib.roi.journeys import build_journeys

    results = {}
    with both_engines(ingest_run) as (duck, spark):
        for engine in (duck, spark):
            results[engine.kind] = build_journeys(engine.table("touchpoints"), engine.table("orders"),
                                                  period_start="2025-07-01", period_end="2026-06-30", label=label)
    a, b = results["duckdb"], results["spark"]
    assert len(a.paths) > 10 and a.paths["path"].map(len).max() > 1, "too few journeys to compare"
    assert a.paths["path"].tolist() == b.paths["path"].tolist()  # both sorted by label
    decay = [c for c in a.paths.columns if c.startswith("decay_")]
    assert decay, "no time-decay columns"
    assert_same_table(a.paths.drop(columns=decay), b.paths.drop(columns=decay), ["path"], name=f"paths by {label}")
    # the decay arrays position by position, as floats (sums of weights: last bits differ)
    assert_same_table(_by_position(a.paths, decay), _by_position(b.paths, decay), ["path", "position"],
                      name=f"time-decay weights by {label}")
    assert_same_table(a.lengths, b.lengths, ["touches"], name="journey lengths")
    assert_same_table(a.time_to_convert, b.time_to_convert, ["days"], name="time to convert")
    _assert_same_json(a.summary, b.summary, "journey summary")


def _by_position(paths: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """One row per path and position with the decay arrays' values (every array is as long as its path)."""
    rows = [{"path": path, "position": i, **{c: float(paths[c].iloc[n][i]) for c in columns}}
            for n, path in enumerate(paths["path"]) for i in range(len(path))]
    return pd.DataFrame(rows)


def test_latest_survey_answers_equal(ingest_run, spark_session):
    from crmlib.segmentation.tiers import latest_survey_answers

    with both_engines(ingest_run) as (duck, spark):
        for column in ("nps_score", "csat"):
            a, b = (e.to_pandas(latest_survey_answers(e.table("surveys"), column, "2026-06-30")) for e in (duck, spark))
            assert len(a) > 0 and a["customer_key"].is_unique
            assert_same_table(a, b, ["customer_key"], name=f"latest {column}")


def test_holdout_spend_equal(ingest_run, spark_session):
    from crmlib.abtest.stage import _holdout_spend

    with both_engines(ingest_run) as (duck, spark):
        channels = duck.to_pandas(duck.table("spend").select("channel").distinct())["channel"].tolist()
        holdouts = {"exp": {"channel": sorted(channels)[0], "campaign_id": None}}
        a, b = (e.to_pandas(_holdout_spend(e.table("spend"), holdouts)) for e in (duck, spark))
    assert len(a) > 0 and set(a["channel"]) == {sorted(channels)[0]}
    assert_same_table(a, b, ["date", "channel", "campaign_id"], name="holdout spend")
