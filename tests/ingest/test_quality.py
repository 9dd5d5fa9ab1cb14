"""data_quality.json: every row read is accounted for, per source, with counts per check.

rows_read is compared with row counts made independently of the engine (Python's csv module, pandas,
the sample generator's own count), so the reconciliation could fail if a row were lost.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest

from crmlib.engine import Engine
from tests.ingest.support.fixture import EXPECTED, NOW, stand_in_resolver, write_fixture
from crmlib.ingest.quality import check_reconciliation
from crmlib.ingest.stage import ingest


def _count_data_rows(src: dict) -> int:
    path, fmt = Path(src["path"]), src["format"]
    if fmt in ("csv", "tsv"):
        with open(path, encoding=src["encoding"], newline="") as fh:
            return sum(1 for _ in csv.reader(fh, delimiter="\t" if fmt == "tsv" else ",")) - 1
    if fmt == "parquet":
        return len(pd.read_parquet(path))
    if fmt == "jsonl":
        return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return len(pd.read_excel(path))


@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    params = write_fixture(root / "data")
    with Engine(root / "run") as eng:
        summary = ingest(eng, params, now=NOW, resolve=stand_in_resolver())
        yield params, eng, summary


def test_counts_per_source_match_the_fixture(fixture_run):
    params, eng, _ = fixture_run
    quality = eng.read_json("data_quality")["sources"]
    got = {name: (q["rows_read"], q["rows_loaded"], q["rows_quarantined"], q["duplicates_dropped"])
           for name, q in quality.items()}
    assert got == EXPECTED


def test_rows_read_equals_an_independent_count_and_reconciles(fixture_run):
    params, eng, _ = fixture_run
    quality = eng.read_json("data_quality")
    for src in params["sources"]:
        q = quality["sources"][src["name"]]
        assert q["rows_read"] == _count_data_rows(src), src["name"]
        assert q["rows_read"] == q["rows_loaded"] + q["rows_quarantined"] + q["duplicates_dropped"]
    assert check_reconciliation(quality) == []


def test_checks_name_what_happened(fixture_run):
    _, eng, _ = fixture_run
    q = eng.read_json("data_quality")["sources"]
    assert q["orders"]["checks"] == {
        "bad_date:order_ts": 1, "bad_number:amount": 1, "duplicate_order_id": 1, "future_timestamp:order_ts": 1,
        "identical_rows_kept": 1, "malformed_row:too_many_fields": 1, "missing_value:source_customer_id": 1}
    assert q["crm"]["checks"] == {"duplicate_row": 1, "invalid_email": 1, "invalid_phone": 1,
                                  "missing_value:source_customer_id": 1}
    assert q["web_events"]["checks"]["identical_rows_kept"] == 1
    assert q["ab"]["checks"] == {"duplicate_row": 1}
    # quarantined rows per source = sum of the quarantine reasons among the checks
    for name, s in q.items():
        reasons = sum(v for k, v in s["checks"].items()
                      if k.split(":")[0] in ("bad_date", "bad_number", "missing_value", "future_timestamp",
                                             "malformed_row", "negative_cost", "out_of_range", "bad_boolean"))
        assert reasons == s["rows_quarantined"], name


def test_quarantine_table_matches_counts(fixture_run):
    _, eng, _ = fixture_run
    quarantine = pd.read_parquet(eng.table_path("quarantine"))
    quality = eng.read_json("data_quality")["sources"]
    per_source = quarantine.groupby("source").size().to_dict()
    assert per_source == {k: v["rows_quarantined"] for k, v in quality.items() if v["rows_quarantined"]}
    json.dumps(quality)  # plain JSON types only


def test_reconciliation_on_generated_sample(tmp_path):
    import yaml

    from crmlib import sample

    from crmlib.params import validate_params

    summary = sample.generate_sample(tmp_path / "data", customers=150, seed=3)
    raw = yaml.safe_load((Path(__file__).parents[2] / "params" / "ci.yaml").read_text(encoding="utf-8"))
    for s in raw["sources"]:
        s["path"] = str(tmp_path / "data" / Path(s["path"]).name)
    raw["ingest"]["identity"] = {"method": "deterministic"}
    params = validate_params(raw, tmp_path)
    with Engine(tmp_path / "run") as eng:
        ingest(eng, params, resolve=stand_in_resolver())
        quality = eng.read_json("data_quality")["sources"]
    for src in params["sources"]:
        q = quality[src["name"]]
        # the generator counts rows per file (eshop_order_lines reads order_lines.csv)
        assert q["rows_read"] == summary.rows[Path(src["path"]).stem], src["name"]
        assert q["rows_read"] == q["rows_loaded"] + q["rows_quarantined"] + q["duplicates_dropped"]
