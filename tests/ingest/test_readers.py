"""crmlib.ingest.readers: every format to text columns with file row numbers, and bad-input messages."""

from __future__ import annotations

import csv
import gzip
import json
import zipfile
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from crmlib.engine import Engine
from crmlib.ingest import readers
from crmlib.ingest.errors import IngestError
from crmlib.ingest.readers import read_source, rejected_rows, suggest_encoding, transcode_to_utf8
from crmlib.params import complete_source


@pytest.fixture
def engine(tmp_path):
    with Engine(tmp_path / "run", database=":memory:") as eng:
        yield eng


def _src(path, kind="orders", **kw):
    """A source entry completed through the params schema, as a run's validated params hold it."""
    return complete_source({"name": kw.pop("name", "s1"), "kind": kind, "path": str(path), **kw})


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
        read_source(engine, {**_src(p), "kind": "invoices"})  # past the schema, which refuses it too
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
    p.write_text("cust;order_ts;amount\nC1;2026-01-01;3\n")
    with pytest.raises(IngestError) as err:
        # the mapping names a column that exists only once the file is split right: the delimiter is to blame
        read_source(engine, _src(p, columns={"cust": "source_customer_id"}))
    msg = str(err.value)
    assert 'How to fix: set `delimiter: ";"`' in msg and "o.csv" in msg and "header row" in msg
    assert "columns mapping" not in msg


def test_mapping_names_a_column_the_file_lacks(engine, tmp_path):
    p = tmp_path / "o.csv"
    p.write_text("source_customer_id,order_ts,amount\nC1,2026-01-01,3\n")
    with pytest.raises(IngestError) as err:
        read_source(engine, _src(p, columns={"Amount ": "amount"}))
    assert "'Amount'" in str(err.value) and "source_customer_id, order_ts, amount" in str(err.value)


def test_empty_file(engine, tmp_path):
    p = tmp_path / "o.csv"
    p.write_bytes(b"")
    with pytest.raises(IngestError) as err:
        read_source(engine, _src(p))
    assert "0 bytes" in str(err.value) and "o.csv" in str(err.value) and "How to fix" in str(err.value)


def test_header_only_file_is_an_empty_load_with_a_warning(engine, tmp_path):
    p = tmp_path / "o.csv"
    p.write_bytes(b"source_customer_id,order_ts,amount\n")
    raw = read_source(engine, _src(p))
    assert engine.to_pandas(raw.table).shape == (0, 3)
    assert len(raw.warnings) == 1 and "no data rows" in raw.warnings[0] and "o.csv" in raw.warnings[0]


def test_gbk_file_read_as_utf8_names_row_column_and_encoding(engine, tmp_path):
    p = tmp_path / "cards.csv"
    p.write_bytes("source_customer_id,name,city\nK1,Wang,Shanghai\nK2,赵六,广州\n".encode("gbk"))
    with pytest.raises(IngestError) as err:
        read_source(engine, _src(p, kind="contacts"))
    msg = str(err.value)
    assert "cards.csv" in msg and "row 2" in msg and "column 'name'" in msg
    assert "not valid utf-8" in msg
    assert "encoding: gb18030" in msg  # GB18030 is the superset of GBK: it decodes the file


def test_bad_bytes_beyond_the_first_mib_are_found_by_the_scan(engine, tmp_path):
    p = tmp_path / "cards.csv"
    good = "".join(f"K{i},Wang,Shanghai\n" for i in range(80_000))  # > 1 MiB of ASCII
    p.write_bytes(("source_customer_id,name,city\n" + good + "K9,赵六,广州\n").encode("gbk"))
    raw = read_source(engine, _src(p, kind="contacts"))
    engine.to_pandas(raw.table)  # the scan sends the undecodable line to the rejects table
    with pytest.raises(IngestError) as err:
        rejected_rows(engine, raw)
    msg = str(err.value)
    assert "row 80001" in msg and "column 'name'" in msg and "encoding: gb18030" in msg


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


def test_transcoded_copy_goes_to_the_private_scratch_dir_and_is_discarded(engine, tmp_path):
    p = tmp_path / "cards.csv"
    p.write_bytes("会员号,姓名\nK1,王伟\n".encode("gbk"))
    raw = read_source(engine, _src(p, kind="contacts", encoding="gbk",
                                   columns={"会员号": "source_customer_id", "姓名": "name"}))
    copy = Path(raw.copy)
    assert copy.is_file() and copy.parent == engine.scratch_dir
    assert not copy.resolve().is_relative_to(engine.run_dir.resolve())  # never under the reports folder
    assert list(_rows(engine, raw)["name"]) == ["王伟"]
    raw.discard_copy()
    assert not copy.exists() and raw.copy is None


def test_utf8_file_is_read_in_place_without_a_copy(engine, tmp_path):
    p = tmp_path / "o.csv"
    p.write_text("source_customer_id,order_ts,amount\nC1,2026-01-01,3\n")
    raw = read_source(engine, _src(p))
    assert raw.copy is None and raw.read_path == str(p)


def test_sample_rows_reads_the_first_rows_only(engine, tmp_path):
    p = tmp_path / "o.csv"
    p.write_text("source_customer_id,order_ts,amount\n" + "".join(f"C{i},2026-01-01,{i}\n" for i in range(1, 51)))
    raw = read_source(engine, _src(p), sample_rows=10)
    assert list(_rows(engine, raw)["amount"]) == [str(i) for i in range(1, 11)]


@pytest.mark.parametrize("make, expected", [
    (lambda p: pd.DataFrame({"a": [1]}).to_parquet(p), "parquet"),
    (lambda p: pd.DataFrame({"a": [1]}).to_excel(p, index=False), "xlsx"),
    (lambda p: p.write_bytes(gzip.compress(b"a,b\n1,2\n")), "gzip"),
    (lambda p: p.write_bytes(b"\x00\x01\x02\x03" * 100), "binary"),
    (lambda p: p.write_bytes("a,b\n1,2\n".encode("utf-16")), "text"),
    (lambda p: p.write_bytes("会员号,姓名\n".encode("gbk")), "text"),
])
def test_sniff_file_type(tmp_path, make, expected):
    p = tmp_path / "f.bin"
    make(p)
    assert readers.sniff_file_type(p.read_bytes()[:4096], p) == expected


def test_zip_without_xl_folder_is_a_zip(tmp_path):
    p = tmp_path / "f.csv"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("orders.csv", "a,b\n")
    assert readers.sniff_file_type(p.read_bytes(), p) == "zip"


@pytest.mark.parametrize("text, expected", [("a,b,c\n1,2,3\n", ","), ("a;b;c\n1,5;2;3\n", ";"),
                                            ("a\tb\n1\t2\n", "\t"), ("a|b\n1|2\n", "|"), ("just one\ncolumn\n", None)])
def test_sniff_delimiter(text, expected):
    assert readers.sniff_delimiter(text) == expected


def test_tab_file_read_as_csv_says_delimiter_tab(engine, tmp_path):
    p = tmp_path / "o.csv"
    p.write_text("source_customer_id\torder_ts\tamount\nC1\t2026-01-01\t3\n")
    with pytest.raises(IngestError) as err:
        read_source(engine, _src(p))
    assert 'set `delimiter: "\\t"`' in str(err.value)


def test_excel_header_row_can_be_given(engine, tmp_path):
    p = tmp_path / "o.xlsx"
    book = openpyxl.Workbook()
    for row in [["source_customer_id", "order_ts", "amount"], ["not", "the", "header"],
                ["source_customer_id", "order_ts", "amount"], ["C1", "2026-01-01", 3]]:
        book.active.append(row)
    book.save(p)
    raw = read_source(engine, _src(p, header_row=3))
    df = _rows(engine, raw)
    assert list(df["source_customer_id"]) == ["C1"] and list(df["_row_number"]) == [1] and raw.warnings == []
    with pytest.raises(IngestError) as err:
        read_source(engine, _src(p, header_row=9))
    assert "header_row: 9" in str(err.value) and "How to fix" in str(err.value)


def test_excel_unnamed_empty_column_is_ignored(engine, tmp_path):
    p = tmp_path / "o.xlsx"
    book = openpyxl.Workbook()
    for row in [["source_customer_id", None, "order_ts", "amount"], ["C1", None, "2026-01-01", 3.0]]:
        book.active.append(row)
    book.save(p)
    raw = read_source(engine, _src(p))
    assert raw.file_columns == ["source_customer_id", "order_ts", "amount"]
    assert list(_rows(engine, raw)["amount"]) == ["3"]  # a whole float as the person sees it


def test_path_is_a_folder(engine, tmp_path):
    with pytest.raises(IngestError) as err:
        read_source(engine, _src(tmp_path))
    assert "folder, not a file" in str(err.value) and "How to fix" in str(err.value)


@pytest.mark.parametrize("data, mixed", [(b"a,b\r\n1,2\n3,4\r\n", True), (b"a,b\n1,2\n", False),
                                         (b"a,b\r\n1,2\r\n3,4\r\n", False), (b"abc\r\nde\r\nfg\r\n", False),
                                         (b"abc\r\nde\nfg\r\n", True)])
def test_mixed_line_endings_found_across_chunk_boundaries(tmp_path, monkeypatch, data, mixed):
    p = tmp_path / "m.csv"
    p.write_bytes(data)
    monkeypatch.setattr(readers, "_CHUNK", 4)  # a CRLF split between two chunks is still one line end
    assert readers._mixed_line_endings(p, "utf-8", gzipped=False, source="m") is mixed


def test_transcoding_normalizes_line_ends_across_chunk_boundaries(tmp_path, monkeypatch):
    p = tmp_path / "m.csv"
    p.write_bytes("会员号,姓名\r\nK1,王伟\nK2,赵六\r\nK3,x\r".encode("gbk"))
    monkeypatch.setattr(readers, "_CHUNK", 3)
    out = transcode_to_utf8(p, "gbk", tmp_path / "u.csv", normalize_newlines=True)
    assert out.read_bytes() == "会员号,姓名\nK1,王伟\nK2,赵六\nK3,x\n".encode("utf-8")
