"""crmlib.ingest.readers: every format to text columns with file row numbers, and bad-input messages."""

from __future__ import annotations

import csv
import json

import pandas as pd
import pytest

from crmlib.engine import Engine
from crmlib.ingest import readers
from crmlib.ingest.errors import IngestError
from crmlib.ingest.readers import read_source, rejected_rows, suggest_encoding, transcode_to_utf8


@pytest.fixture
def engine(tmp_path):
    with Engine(tmp_path / "run", database=":memory:") as eng:
        yield eng


def _src(path, kind="orders", **kw):
    return {"name": kw.pop("name", "s1"), "kind": kind, "path": str(path), "format": kw.pop("format", None),
            "encoding": kw.pop("encoding", "utf-8"), "columns": kw.pop("columns", {}), **kw}


def _rows(engine, raw):
    return engine.to_pandas(raw.numbered().order_by("_row_number"))


def test_csv_all_text_and_row_numbers(engine, tmp_path):
    p = tmp_path / "o.csv"
    p.write_text("order_id,customer,order_ts,amount,note\n007,C1,2026-01-01,1e3,\"a, b\"\n008,C2,x,12,\n")
    raw = read_source(engine, _src(p, columns={"customer": "source_customer_id"}))
    df = _rows(engine, raw)
    assert list(df["_row_number"]) == [1, 2]
    # nothing lost to type inference: leading zeros and exponent text stay as written
    assert list(df["order_id"]) == ["007", "008"]
    assert list(df["amount"]) == ["1e3", "12"]
    assert df["note"].iloc[0] == "a, b"
    assert raw.extras == ["note"]
    assert set(raw.canonical) == {"order_id", "source_customer_id", "order_ts", "amount"}


def test_header_matches_canonical_names_up_to_case_and_spaces(engine, tmp_path):
    p = tmp_path / "o.csv"
    p.write_text("Order ID,Source_Customer_ID,ORDER_TS,Amount\n1,C1,2026-01-01,3\n")
    raw = read_source(engine, _src(p))
    assert set(raw.canonical) == {"order_id", "source_customer_id", "order_ts", "amount"}


def test_gbk_with_chinese_headers(engine, tmp_path):
    p = tmp_path / "cards.csv"
    p.write_bytes("会员号,姓名,手机,城市\nK1,王伟,13800138000,上海\nK2,赵六,,广州\n".encode("gbk"))
    raw = read_source(engine, _src(p, kind="contacts", encoding="gbk",
                                   columns={"会员号": "source_customer_id", "姓名": "name", "手机": "phone"}))
    df = _rows(engine, raw)
    assert list(df["source_customer_id"]) == ["K1", "K2"]
    assert list(df["name"]) == ["王伟", "赵六"]
    assert list(df["城市"]) == ["上海", "广州"]  # unmapped column kept as an extra under its own name


def test_transcoding_across_chunk_boundaries(tmp_path, monkeypatch):
    text = "会员号,姓名\n" + "".join(f"K{i},王伟{i}号\n" for i in range(200))
    p = tmp_path / "g.csv"
    p.write_bytes(text.encode("gb18030"))
    monkeypatch.setattr(readers, "_CHUNK", 7)  # odd size: multi-byte characters split between chunks
    out = transcode_to_utf8(p, "gb18030", tmp_path / "u.csv")
    assert out.read_text(encoding="utf-8") == text


def test_tsv_parquet_jsonl_xlsx(engine, tmp_path):
    frame = pd.DataFrame({"touch_ts": ["2026-01-01 10:00", "2026-01-02"], "channel": ["email", "sms"],
                          "anonymous_id": ["a1", None]})
    frame.to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    records = [{"touch_ts": "2026-01-01 10:00", "channel": "email", "anonymous_id": "a1"},
               {"touch_ts": "2026-01-02", "channel": "sms", "anonymous_id": None}]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    frame.to_excel(tmp_path / "t.xlsx", index=False)
    for ext in ("tsv", "parquet", "jsonl", "xlsx"):
        raw = read_source(engine, _src(tmp_path / f"t.{ext}", kind="touchpoints", name=f"t_{ext}"))
        df = _rows(engine, raw)
        assert list(df["_row_number"]) == [1, 2], ext
        assert list(df["channel"]) == ["email", "sms"], ext
        assert df["anonymous_id"].iloc[0] == "a1" and pd.isna(df["anonymous_id"].iloc[1]), ext


def test_missing_file(engine, tmp_path):
    with pytest.raises(IngestError) as err:
        read_source(engine, _src(tmp_path / "nope.csv"))
    msg = str(err.value)
    assert "nope.csv" in msg and "file not found" in msg and "How to fix" in msg


def test_unknown_kind(engine, tmp_path):
    p = tmp_path / "o.csv"
    p.write_text("a\n1\n")
    with pytest.raises(IngestError) as err:
        read_source(engine, _src(p, kind="invoices"))
    assert "unknown kind 'invoices'" in str(err.value) and "orders" in str(err.value)


def test_unmapped_required_column(engine, tmp_path):
    p = tmp_path / "o.csv"
    p.write_text("cust_no,ts,total\nC1,2026-01-01,3\n")
    with pytest.raises(IngestError) as err:
        read_source(engine, _src(p, columns={"cust_no": "source_customer_id", "ts": "order_ts"}))
    msg = str(err.value)
    assert "o.csv" in msg                              # which file
    assert "'amount'" in msg                           # which column is missing
    assert "cust_no, ts, total" in msg                 # which columns exist
    assert "columns: {total: amount}" in msg           # a suggested mapping
    assert err.value.column == "amount"


def test_wrong_delimiter_is_named(engine, tmp_path):
    p = tmp_path / "o.csv"
    p.write_text("source_customer_id;order_ts;amount\nC1;2026-01-01;3\n")
    with pytest.raises(IngestError) as err:
        read_source(engine, _src(p))
    assert "delimiter: ';'" in str(err.value)


def test_mapping_names_a_column_the_file_lacks(engine, tmp_path):
    p = tmp_path / "o.csv"
    p.write_text("source_customer_id,order_ts,amount\nC1,2026-01-01,3\n")
    with pytest.raises(IngestError) as err:
        read_source(engine, _src(p, columns={"Amount ": "amount"}))
    assert "'Amount'" in str(err.value) and "source_customer_id, order_ts, amount" in str(err.value)


@pytest.mark.parametrize("content, words", [(b"", "0 bytes"), (b"source_customer_id,order_ts,amount\n", "no data rows")])
def test_empty_file(engine, tmp_path, content, words):
    p = tmp_path / "o.csv"
    p.write_bytes(content)
    with pytest.raises(IngestError) as err:
        read_source(engine, _src(p))
    assert words in str(err.value) and "o.csv" in str(err.value) and "How to fix" in str(err.value)


def test_gbk_file_read_as_utf8_names_row_column_and_encoding(engine, tmp_path):
    p = tmp_path / "cards.csv"
    p.write_bytes("source_customer_id,name,city\nK1,Wang,Shanghai\nK2,赵六,广州\n".encode("gbk"))
    raw = read_source(engine, _src(p, kind="contacts"))
    engine.to_pandas(raw.table)  # the scan sends the undecodable line to the rejects table
    with pytest.raises(IngestError) as err:
        rejected_rows(engine, raw)
    msg = str(err.value)
    assert "cards.csv" in msg and "row 2" in msg and "column 'name'" in msg
    assert "not valid utf-8" in msg
    assert "encoding: gb18030" in msg  # GB18030 is the superset of GBK: it decodes the file


def test_declared_encoding_that_fails_while_transcoding(engine, tmp_path):
    p = tmp_path / "c.csv"
    # UTF-8 bytes of 上海市 are not valid GBK (many other UTF-8 strings are, and decode to mojibake)
    p.write_bytes("source_customer_id,name\nK1,Wang\nK2,上海市\n".encode("utf-8"))
    with pytest.raises(IngestError) as err:
        read_source(engine, _src(p, kind="contacts", encoding="gbk"))
    msg = str(err.value)
    assert "not valid gbk" in msg and "row 2" in msg and "column 'name'" in msg
    assert "encoding: utf-8" in msg


def test_suggest_encoding():
    assert suggest_encoding("会员号".encode("gbk"), exclude="utf-8") in ("gb18030", "gbk")
    assert suggest_encoding("会员号".encode("utf-8"), exclude="gbk") == "utf-8"
    assert suggest_encoding("x".encode("utf-16"), exclude="utf-8") == "utf-16"


def test_malformed_lines_are_rejected_not_lost(engine, tmp_path):
    p = tmp_path / "o.csv"
    rows = [["source_customer_id", "order_ts", "amount"], ["C1", "2026-01-01", "1"],
            ["C2", "2026-01-01", "2", "extra"], ["C3", "2026-01-01"], ["C4", "2026-01-01", "4"]]
    with open(p, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    raw = read_source(engine, _src(p))
    df = _rows(engine, raw)
    assert list(df["source_customer_id"]) == ["C1", "C4"]
    rejects = rejected_rows(engine, raw)
    assert [(r[0], r[1]) for r in rejects] == [(2, "malformed_row:too_many_fields"),
                                                (3, "malformed_row:too_few_fields")]
    assert rejects[0][2] == "C2,2026-01-01,2,extra"


def test_utf8_file_declared_gbk_that_happens_to_decode_is_warned(engine, tmp_path):
    p = tmp_path / "c.csv"
    p.write_bytes("source_customer_id,name\nK1,赵六\n".encode("utf-8"))  # decodes as GBK, to mojibake
    raw = read_source(engine, _src(p, kind="contacts", encoding="gbk"))
    assert len(raw.warnings) == 1 and "decodes as UTF-8" in raw.warnings[0] and "c.csv" in raw.warnings[0]
