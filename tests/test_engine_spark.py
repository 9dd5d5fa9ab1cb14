"""The Engine's Spark backend: scratch relations, run tables as folders, and the compiler fixes that make
Spark's results equal DuckDB's (float literals, strip, regex groups). Runs on the shared session
(``tests/spark_support.py``); a missing Java fails these tests."""

from __future__ import annotations

import ibis
import pandas as pd
import pyarrow.parquet as pq
import pytest

from crmlib.engine import Engine
from tests.spark_support import SPARK_SETTINGS


@pytest.fixture
def spark(spark_session, tmp_path):
    with Engine(tmp_path / "run", settings=SPARK_SETTINGS) as eng:
        yield eng


@pytest.fixture
def duck(tmp_path):
    with Engine(tmp_path / "run", database=":memory:") as eng:
        yield eng


def test_run_table_written_by_spark_is_a_folder_that_both_engines_read(spark, duck):
    frame = pd.DataFrame({"k": [1, 2, 3], "ts": pd.to_datetime(["2026-01-01 10:00:00", "2026-03-01 23:59:59",
                                                                "2026-06-30 00:00:00"]),
                          "name": ["王伟", "a", None], "x": [0.1, 0.2, 0.3]})
    source = spark.scratch("frame_src", frame)
    path = spark.write_table("t", source.mutate(y=source.x * 2))
    assert path.is_dir() and list(path.glob("part-*.parquet"))
    assert spark.list_tables() == ["t"]
    from_spark = spark.to_pandas(spark.table("t").order_by("k"))
    from_duck = duck.to_pandas(duck.table("t").order_by("k"))  # the same run folder
    for got in (from_spark, from_duck):
        assert got["k"].tolist() == [1, 2, 3]
        assert got["name"].tolist()[:2] == ["王伟", "a"]
        assert [str(t) for t in got["ts"]] == ["2026-01-01 10:00:00", "2026-03-01 23:59:59", "2026-06-30 00:00:00"]
        assert got["y"].tolist() == [0.2, 0.4, 0.6]
    # a DataFrame replaces the folder with one file, in one rename
    spark.write_table("t", frame)
    assert path.is_file() and len(pq.read_table(path)) == 3
    spark.remove_tables("t")
    assert not path.exists()


def test_scratch_is_computed_once_and_dropped(spark):
    base = spark.scratch("base", ibis.memtable({"k": list(range(100))}))
    doubled = spark.scratch("doubled", base.mutate(v=base.k * 2))
    spark.drop("base")  # the scratch keeps its rows when its input goes
    assert int(spark.to_pandas(doubled.v.sum())) == 2 * sum(range(100))
    spark.drop("doubled", "never_made")
    assert "doubled" not in spark.con._session.catalog.listTables() and not spark.con._crm_scratch


def test_compiler_gives_duckdb_results(spark, duck):
    texts = ["chef", "\tvivf\x0b ", " a b ", "inf"]
    data = ibis.memtable({"i": list(range(len(texts))), "s": texts, "n": [7, 100, 1, 3]})

    def compute(engine):
        t = engine.scratch("texts", data)
        out = t.select("i", per_minute=t.n / 60.0, stripped=t.s.strip(), left=t.s.lstrip(), right=t.s.rstrip(),
                       swapped=t.s.re_replace(r"^(\w)(\w)", r"\2\1"), dollar=t.s.re_replace("a", "$1"))
        return engine.to_pandas(out.order_by("i"))

    got, want = compute(spark), compute(duck)
    assert got["stripped"].tolist() == [s.strip(" \t\n\r\x0b\x0c") for s in texts] == want["stripped"].tolist()
    assert got["left"].tolist() == want["left"].tolist() and got["right"].tolist() == want["right"].tolist()
    assert got["swapped"].tolist() == want["swapped"].tolist() == ["hcef", "\tvivf\x0b ", " a b ", "nif"]
    assert got["dollar"].tolist() == want["dollar"].tolist()
    # 7 / 60.0 was rounded to 6 decimals on Spark (a DECIMAL literal)
    assert got["per_minute"].tolist() == want["per_minute"].tolist() == [n / 60.0 for n in (7, 100, 1, 3)]


def test_duckdb_writes_summed_integers_as_integers(duck):
    t = duck.scratch("x", ibis.memtable({"g": [1, 1, 2], "n": [5, 6, 7]}))
    path = duck.write_table("s", t.group_by("g").agg(total=t.n.sum()))
    assert str(pq.read_schema(path).field("total").type) == "int64"
