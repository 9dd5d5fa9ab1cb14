"""Ingest's readers on Spark give what they give on DuckDB: the same text, row numbers and rejected lines.

Every file is read on both engines (one shared ``local[2]`` SparkSession for the module, a fresh DuckDB
per test) and the frames are compared whole. A machine without a usable Java fails here: these tests are
never skipped.
"""

from __future__ import annotations

import csv
import gzip
import io
import shutil
from pathlib import Path

import openpyxl
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from crmlib.engine import Engine
from tests.spark_support import SPARK_SETTINGS
from crmlib.ingest.errors import IngestError
from crmlib.ingest.readers import read_source, rejected_rows, store_numbered
from crmlib.params import complete_source, load_params
from crmlib.sample import generate_sample

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def spark(spark_session, tmp_path_factory):
    with Engine(tmp_path_factory.mktemp("spark_run"), settings=SPARK_SETTINGS) as eng:
        yield eng


@pytest.fixture
def duck(tmp_path):
    with Engine(tmp_path / "duck_run", database=":memory:") as eng:
        yield eng


def _src(path, kind="orders", **kw):
    return complete_source({"name": kw.pop("name", "s1"), "kind": kind, "path": str(path), **kw})


def _frame(engine, raw) -> pd.DataFrame:
    df = engine.to_pandas(raw.numbered().order_by("_row_number")).reset_index(drop=True)
    df = df.astype(object)
    return df.where(df.notna(), None)


def _both(duck, spark, source):
    """Read ``source`` on both engines; assert the same header, columns, rows and rejects; return the rows."""
    on_duck, on_spark = read_source(duck, source), read_source(spark, source)
    assert (on_spark.file_columns, on_spark.canonical, on_spark.extras) == (
        on_duck.file_columns, on_duck.canonical, on_duck.extras)
    rows_duck, rows_spark = _frame(duck, on_duck), _frame(spark, on_spark)
    pd.testing.assert_frame_equal(rows_spark, rows_duck)
    assert rejected_rows(spark, on_spark) == rejected_rows(duck, on_duck)
    assert on_spark.warnings == on_duck.warnings
    rows_spark.attrs["rejects"] = rejected_rows(spark, on_spark)
    on_duck.discard_copy()
    on_spark.discard_copy()
    return rows_spark


def _write_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8", delimiter: str = ",") -> Path:
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator="\n").writerows(rows)
    path.write_bytes(buf.getvalue().encode(encoding))
    return path


ORDERS = ["order_id", "source_customer_id", "order_ts", "amount", "note"]


def test_utf8_csv_keeps_text_as_written(duck, spark, tmp_path):
    p = _write_csv(tmp_path / "o.csv", [ORDERS, ["007", "C1", "2026-01-01", "1e3", "a, b"],
                                        ["008", "C2", "x", "12.50", ""],
                                        ["009", "王伟", "2026-01-02", " 3 ", 'say "hi"']])
    with open(p, "a", encoding="utf-8") as fh:
        fh.write('010,C4,2026-01-03,4,""\n')  # a quoted empty field next to an unquoted one above
    rows = _both(duck, spark, _src(p))
    assert rows["order_id"].tolist() == ["007", "008", "009", "010"]
    assert rows["amount"].tolist() == ["1e3", "12.50", " 3 ", "4"]
    assert rows["_row_number"].tolist() == [1, 2, 3, 4]


def test_tsv(duck, spark, tmp_path):
    p = _write_csv(tmp_path / "o.tsv", [ORDERS, ["1", "C1", "2026-01-01", "5", "a,b"],
                                        ["2", "C2", "2026-01-02", "6", ""]], delimiter="\t")
    rows = _both(duck, spark, _src(p, format="tsv"))
    assert rows["note"].tolist() == ["a,b", None]


def test_gbk_csv_with_chinese_is_read_from_the_utf8_copy(duck, spark, tmp_path):
    header = ["会员号", "姓名", "手机", "城市"]
    p = _write_csv(tmp_path / "cards.csv", [header, ["K1", "王伟", "13800138000", "上海"],
                                            ["K2", "赵六", "", "广州"]], encoding="gbk")
    columns = {"会员号": "source_customer_id", "姓名": "name", "手机": "phone"}
    rows = _both(duck, spark, _src(p, kind="contacts", encoding="gbk", columns=columns))
    assert rows["name"].tolist() == ["王伟", "赵六"] and rows["城市"].tolist() == ["上海", "广州"]


def test_gb18030_only_characters(duck, spark, tmp_path):
    p = _write_csv(tmp_path / "cards.csv", [["source_customer_id", "name"], ["K1", "𠀀䶮"], ["K2", "€"]],
                   encoding="gb18030")
    rows = _both(duck, spark, _src(p, kind="contacts", encoding="gb18030"))
    assert rows["name"].tolist() == ["𠀀䶮", "€"]


def test_quoted_line_breaks_and_ragged_lines_keep_record_numbers(duck, spark, tmp_path):
    p = tmp_path / "o.csv"
    p.write_bytes(b'source_customer_id,order_ts,amount\nC1,2026-01-02,"12\n5"\nC2,2026-01-03,7,extra\n'
                  b'C3,"2026-01-04",3\nC4\nC5,"one ""two""\r\nthree",1\nC6,2026-01-05\n')
    rows = _both(duck, spark, _src(p))
    assert rows["source_customer_id"].tolist() == ["C1", "C3", "C5"]
    assert rows["amount"].tolist() == ["12\n5", "3", "1"]
    # a file with both CRLF and LF is read from a copy with LF line ends, on both engines
    assert rows["order_ts"].tolist()[2] == 'one "two"\nthree'
    # record numbers, not physical lines: C2 is the 2nd record although it is on the 3rd line
    assert [(r[0], r[1]) for r in rows.attrs["rejects"]] == [
        (2, "malformed_row:too_many_fields"), (4, "malformed_row:too_few_fields"),
        (6, "malformed_row:too_few_fields")]


def test_short_and_long_lines_are_rejected_with_their_line(duck, spark, tmp_path):
    rows = [["source_customer_id", "order_ts", "amount"], ["C1", "2026-01-01", "1"],
            ["C2", "2026-01-01", "2", "extra"], ["C3", "2026-01-01"], ["C4", "2026-01-01", "4"]]
    p = _write_csv(tmp_path / "o.csv", rows)
    got = _both(duck, spark, _src(p))
    assert got["source_customer_id"].tolist() == ["C1", "C4"] and got["_row_number"].tolist() == [1, 2]
    assert got.attrs["rejects"] == [(2, "malformed_row:too_many_fields", "C2,2026-01-01,2,extra"),
                                    (3, "malformed_row:too_few_fields", "C3,2026-01-01")]


def test_crlf_blank_and_mixed_line_ends(duck, spark, tmp_path):
    crlf = tmp_path / "crlf.csv"
    crlf.write_bytes(b"source_customer_id,order_ts,amount\r\nC1,2026-01-01,1\r\n\r\nC2,2026-01-02,2\r\n\r\n")
    assert _both(duck, spark, _src(crlf))["source_customer_id"].tolist() == ["C1", "C2"]
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfsource_customer_id,order_ts,amount\nC1,2026-01-01,1\n   \nC2,2026-01-02,2\n\t\n")
    spaced = _both(duck, spark, _src(bom))  # a line of white space is a record: too few fields
    assert spaced["source_customer_id"].tolist() == ["C1", "C2"] and len(spaced.attrs["rejects"]) == 2
    tabs = tmp_path / "tabs.tsv"
    tabs.write_bytes(b"source_customer_id\torder_ts\tamount\nC1\t2026-01-01\t1\n\t\t\nC2\t2026-01-02\t2\n")
    assert _both(duck, spark, _src(tabs, format="tsv"))["source_customer_id"].tolist() == ["C1", None, "C2"]
    mixed = tmp_path / "mixed.csv"
    mixed.write_bytes(b"source_customer_id,order_ts,amount\r\nC1,2026-01-01,1\nC2,2026-01-02,2\r\nC3,x\n")
    got = _both(duck, spark, _src(mixed))
    assert got["source_customer_id"].tolist() == ["C1", "C2"] and len(got.attrs["rejects"]) == 1


def test_header_only_file_is_no_rows_with_a_warning(duck, spark, tmp_path):
    p = tmp_path / "o.csv"
    p.write_bytes(b"source_customer_id,order_ts,amount\n")
    rows = _both(duck, spark, _src(p))
    assert rows.empty and list(rows.columns) == ["_row_number", "source_customer_id", "order_ts", "amount"]


def test_gzip_csv(duck, spark, tmp_path):
    p = tmp_path / "o.csv"
    p.write_bytes(gzip.compress(b"source_customer_id,order_ts,amount\nC1,2026-01-01,1\nC2,2026-01-02,2\n"))
    assert _both(duck, spark, _src(p))["amount"].tolist() == ["1", "2"]


def test_rows_split_across_many_spark_tasks_are_numbered_in_file_order(duck, spark, tmp_path):
    """Small file splits make Spark read the file in many tasks: numbers and rejects still match."""
    rows = [["source_customer_id", "order_ts", "amount"]]
    for i in range(1, 3001):
        if i % 701 == 0:
            rows.append([f"C{i}", "2026-01-01"])
        elif i % 997 == 0:
            rows.append([f"C{i}", "2026-01-01", str(i), "extra"])
        else:
            rows.append([f"C{i}", "2026-01-01", str(i)])
    p = _write_csv(tmp_path / "o.csv", rows)
    session = spark.con._session
    previous = session.conf.get("spark.sql.files.maxPartitionBytes")
    session.conf.set("spark.sql.files.maxPartitionBytes", "4096")
    try:
        got = _both(duck, spark, _src(p))
        # and with a quoted line break, which makes Spark read the file in one task
        with open(p, "a") as fh:
            fh.write('C9,"2026-01-01\n",9\nC10,2026-01-01\n')
        quoted = _both(duck, spark, _src(p))
    finally:
        session.conf.set("spark.sql.files.maxPartitionBytes", previous)
    assert len(got) == 3000 - 4 - 3 and got["_row_number"].tolist() == list(range(1, len(got) + 1))
    assert [r[0] for r in got.attrs["rejects"]] == [701, 997, 1402, 1994, 2103, 2804, 2991]
    assert [r[0] for r in quoted.attrs["rejects"]][-1] == 3002


def test_invalid_utf8_bytes_beyond_the_first_mib_are_an_error_naming_the_row(duck, spark, tmp_path):
    """Bytes that are not UTF-8 after the checked head: Spark reads them as U+FFFD, the reader finds them."""
    p = tmp_path / "cards.csv"
    good = "".join(f"K{i},Wang,Shanghai\n" for i in range(80_000))  # > 1 MiB of ASCII
    p.write_bytes(("source_customer_id,name,city\n" + good + "K9,赵六,广州\n").encode("gbk"))
    raw = read_source(duck, _src(p, kind="contacts"))
    duck.to_pandas(raw.table)
    with pytest.raises(IngestError) as on_duck:
        rejected_rows(duck, raw)
    with pytest.raises(IngestError) as on_spark:
        read_source(spark, _src(p, kind="contacts"))
    assert on_spark.value.row == on_duck.value.row == 80001
    assert on_spark.value.column == on_duck.value.column == "name"
    assert on_spark.value.setting == on_duck.value.setting == {"encoding": "gb18030"}


def test_a_replacement_character_in_valid_utf8_is_text(duck, spark, tmp_path):
    p = _write_csv(tmp_path / "o.csv", [["source_customer_id", "order_ts", "amount"], ["C\ufffd", "2026-01-01", "1"]])
    assert _both(duck, spark, _src(p))["source_customer_id"].tolist() == ["C\ufffd"]


def test_jsonl(duck, spark, tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"account_id": "A1", "mobile": "138", "n": 12.5, "ok": true}\n\n'
                 '{"account_id": "A2", "mobile": null, "n": 7, "extra": "王"}\n'
                 '{"mobile": "139", "account_id": "A3"}\n', encoding="utf-8")
    rows = _both(duck, spark, _src(p, kind="contacts", columns={"account_id": "source_customer_id", "mobile": "phone"}))
    assert rows["_row_number"].tolist() == [1, 2, 3]
    assert rows["n"].tolist() == ["12.5", "7", None] and rows["ok"].tolist() == ["true", None, None]


def test_jsonl_line_that_is_not_an_object_is_an_error(spark, tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"source_customer_id": "A1"}\n{"source_customer_id": \n', encoding="utf-8")
    with pytest.raises(IngestError, match="not valid JSON lines: line 2"):
        read_source(spark, _src(p, kind="contacts"))


def test_parquet(duck, spark, tmp_path):
    p = tmp_path / "e.parquet"
    table = pa.table({"source_customer_id": ["C1", None, "王"], "event_ts": ["2026-01-01 10:00:00"] * 3,
                      "event_type": ["view", "cart", "buy"], "qty": pa.array([1, None, 3], pa.int64()),
                      "flag": [True, False, None], "day": pa.array([19000, 19001, None], pa.date32()),
                      "seen_at": pa.array([1767348000_000000, None, 1767348000_000500], pa.timestamp("us"))})
    pq.write_table(table, p, row_group_size=2)
    rows = _both(duck, spark, _src(p, kind="events", format="parquet"))
    assert rows["_row_number"].tolist() == [1, 2, 3] and rows["qty"].tolist() == ["1", None, "3"]
    sample = read_source(spark, _src(p, kind="events", format="parquet"), sample_rows=2)
    assert spark.to_pandas(sample.table)["_row_number"].tolist() == [1, 2]


def test_parquet_utc_instants_keep_their_offset(duck, spark, tmp_path):
    """DuckDB writes the offset of its own time zone (the machine's), Spark UTC's: the same instants."""
    p = tmp_path / "e.parquet"
    paid = pa.array([1767348000_000000, None, 1767348000_500000], pa.timestamp("us", tz="UTC"))
    pq.write_table(pa.table({"source_customer_id": ["C1", "C2", "C3"], "event_ts": paid,
                             "event_type": ["a", "b", "c"]}), p)
    texts = []
    for engine in (duck, spark):
        raw = read_source(engine, _src(p, kind="events", format="parquet"))
        texts.append(_frame(engine, raw)["event_ts"].tolist())
    assert texts[1] == ["2026-01-02 10:00:00+00", None, "2026-01-02 10:00:00.5+00"]
    assert [pd.Timestamp(t) if t else None for t in texts[0]] == [pd.Timestamp(t) if t else None for t in texts[1]]


def test_xlsx(duck, spark, tmp_path):
    p = tmp_path / "c.xlsx"
    book = openpyxl.Workbook()
    sheet = book.active
    for row in [["Member list"], [], ["source_customer_id", "name", "joined"], ["K1", "王伟", 20260105],
                ["K2", None, None], [], ["K3", "赵六", 3.5]]:
        sheet.append(row)
    book.save(p)
    rows = _both(duck, spark, _src(p, kind="contacts", format="xlsx"))
    assert rows["_row_number"].tolist() == [1, 2, 4]


def test_sample_rows_read_the_first_rows_only(duck, spark, tmp_path):
    p = _write_csv(tmp_path / "o.csv", [["source_customer_id", "order_ts", "amount"]]
                   + [[f"C{i}", "2026-01-01", str(i)] for i in range(10)])
    on_duck = read_source(duck, _src(p), sample_rows=3)
    on_spark = read_source(spark, _src(p), sample_rows=3)
    pd.testing.assert_frame_equal(_frame(spark, on_spark), _frame(duck, on_duck))
    assert len(_frame(spark, on_spark)) == 3


def test_store_numbered_gives_the_stage_the_same_rows(duck, spark, tmp_path):
    rows = [["source_customer_id", "order_ts", "amount"], ["C1", "2026-01-01", "1"], ["C2", "x"],
            ["C3", "2026-01-03", "3"]]
    p = _write_csv(tmp_path / "o.csv", rows)
    stored = []
    for engine in (duck, spark):
        raw = read_source(engine, _src(p))
        expr = raw.table.mutate(amount_text=raw.table.amount.upper())
        table = store_numbered(engine, raw, expr)
        df = engine.to_pandas(table.order_by("_row_number"))
        assert table.columns[0] == "_row_number"
        stored.append((df[["_row_number", "source_customer_id", "amount_text"]].values.tolist(),
                       rejected_rows(engine, raw)))
        engine.drop("decided_s1", "raw_s1")
    assert stored[0] == stored[1]
    assert stored[0][0] == [[1, "C1", "1"], [2, "C3", "3"]]


def test_every_source_of_the_ci_sample(duck, spark, tmp_path):
    data = tmp_path / "data" / "ci"
    generate_sample(data, customers=1000, seed=42)
    params = yaml.safe_load((ROOT / "params" / "ci.yaml").read_text(encoding="utf-8"))
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "ci.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    loaded = load_params(tmp_path / "params" / "ci.yaml")
    for source in loaded["sources"]:
        rows = _both(duck, spark, source)
        assert len(rows) > 0 and rows["_row_number"].tolist() == list(range(1, len(rows) + 1)), source["name"]
    shutil.rmtree(data)
