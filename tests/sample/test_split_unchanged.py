"""The generator, split into one module per source kind and extended, still writes the old bytes.

`golden_sha256_seed7_300.json` holds the sha256 of every file the single-module generator wrote for
300 customers and seed 7, recorded before the split. Three files changed on purpose and are checked
differently: ``truth/README.md`` (documents the new truth files), ``surveys.tsv``, whose category
and comment columns now carry the planted feedback effects while its respondents, times and scores
(the first four columns) stay byte-identical, and ``web_events.parquet``, which gained abandoned
sessions (the funnel's drop-off) after every older session while the older rows stay identical.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from crmlib.sample import generate_sample

RECORDED = json.loads((Path(__file__).parent / "golden_sha256_seed7_300.json").read_text())
GOLDEN, OLDER_EVENTS = RECORDED["sha256"], RECORDED["web_events_older_rows"]
CHANGED_ON_PURPOSE = {"truth/README.md", "surveys.tsv", "web_events.parquet"}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("small")
    generate_sample(out, customers=300, seed=7)
    return out


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_older_file_is_byte_identical(small):
    old_files = {name for name in GOLDEN if not name.endswith("]")}
    assert old_files - CHANGED_ON_PURPOSE, "the golden list is empty"
    differing = [name for name in sorted(old_files - CHANGED_ON_PURPOSE) if _sha(small / name) != GOLDEN[name]]
    assert differing == []


def test_survey_respondents_times_and_scores_are_unchanged(small):
    text = (small / "surveys.tsv").read_text(encoding="utf-8")
    first4 = "\n".join("\t".join(line.split("\t")[:4]) for line in text.splitlines())
    assert hashlib.sha256(first4.encode()).hexdigest() == GOLDEN["surveys.tsv[:4 columns]"]
    # the categories did change: the golden digest of the whole file no longer matches
    assert _sha(small / "surveys.tsv") != GOLDEN["surveys.tsv"]


def test_older_event_rows_are_unchanged_and_the_new_sessions_interleave(small):
    import pandas as pd

    events = pd.read_parquet(small / "web_events.parquet")
    older = events[events.session_id <= OLDER_EVENTS["last_session_id"]].reset_index(drop=True)
    csv = older.to_csv(index=False).encode()
    assert len(older) == OLDER_EVENTS["rows"]
    assert hashlib.sha256(csv).hexdigest() == OLDER_EVENTS["sha256_of_csv"]
    added = events[events.session_id > OLDER_EVENTS["last_session_id"]]
    assert len(added) > 0 and added.event_ts.min() < older.event_ts.max()
    # sorted as before: by time, then session
    assert events.sort_values(["event_ts", "session_id"], kind="stable").index.equals(events.index)
    assert _sha(small / "web_events.parquet") != GOLDEN["web_events.parquet"]


def test_new_files_are_added_beside_the_old_ones(small):
    written = {str(p.relative_to(small)) for p in small.rglob("*") if p.is_file()}
    old_files = {name for name in GOLDEN if not name.endswith("]")}
    assert old_files <= written
    assert written - old_files == {"order_lines.csv", "truth/products.parquet", "truth/bought_together.parquet",
                                   "truth/order_lines.json", "truth/funnel.json", "truth/feedback.json"}


def test_names_other_code_imports_stay_importable():
    from crmlib.sample import AS_OF, SOURCE_FILES, STORE_CARD_COLUMNS, SampleSummary  # noqa: F401
    from crmlib.sample import generator

    assert "paid_search" in generator.CHANNELS and "百度_品牌词" in generator.CAMPAIGNS
    assert generator.generate_sample is generate_sample
    assert callable(generator._write_events) and callable(generator._build_order_file)
