"""The generator, split into one module per source kind and extended, still writes the old bytes.

`golden_sha256_seed7_300.json` holds the sha256 of every file the single-module generator wrote for
300 customers and seed 7, recorded before the split. Two files changed on purpose and are checked
differently: ``truth/README.md`` (documents the new truth files) and ``surveys.tsv``, whose category
and comment columns now carry the planted feedback effects while its respondents, times and scores
(the first four columns) stay byte-identical.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from crmlib.sample import generate_sample

GOLDEN = json.loads((Path(__file__).parent / "golden_sha256_seed7_300.json").read_text())["sha256"]
CHANGED_ON_PURPOSE = {"truth/README.md", "surveys.tsv"}


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
