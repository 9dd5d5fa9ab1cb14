"""Bad-input corpus, file level: broken exports as they come, driven through the ingest stage's Python API.

Each case asserts one of: what the user meant was loaded (exact values), the row was quarantined with a
reason, or ingest raised an IngestError whose message names the file, the row (where one applies), the
column (where one applies) and the fix. Where rows are loaded, rows read equals the number of records
in the file as Python's csv module counts them (blank lines are no records; a quoted field may span
lines). Value-level problems (decimal commas, currencies, dates, absurd amounts, duplicate sources) are
in test_corpus_values.py.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import gzip
import io
import os
import zipfile
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from crmlib.engine import Engine
from crmlib.ingest import readers
from crmlib.ingest.errors import IngestError
from crmlib.ingest.stage import ingest
from crmlib.params import validate_params
from tests.ingest.support.fixture import NOW

ORDERS = "order_id,customer_id,order_ts,amount\nO1,C1,2026-01-02 10:00,12.5\nO2,C2,2026-01-03,7\n"
IDS = {"customer_id": "source_customer_id"}


def _params(tmp_path: Path, *sources: dict) -> dict:
    """Validated params over ``sources`` (dicts with name, kind, file and options), plus a clean orders
    source when none of them is an orders source (a run needs one)."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    entries = [{k: v for k, v in s.items() if k != "file"} | {"path": str(s["file"])} for s in sources]
    if not any(s["kind"] == "orders" for s in sources):
        (data / "base_orders.csv").write_text(ORDERS, encoding="utf-8")
        entries.append({"name": "base_orders", "kind": "orders", "path": str(data / "base_orders.csv"),
                        "columns": IDS})
    return validate_params({"run": {"name": "corpus", "timezone": "Asia/Shanghai",
                                    "output_dir": str(tmp_path / "reports")},
                            "sources": entries, "ingest": {"identity": {"method": "deterministic"}}}, tmp_path)


def _ingest(tmp_path: Path, params: dict) -> tuple:
    """Run the ingest stage; return (summary, {table name: DataFrame})."""
    with Engine(tmp_path / "run") as eng:
        summary = ingest(eng, params, now=NOW)
        tables = {name: pd.read_parquet(eng.table_path(name)) for name in eng.list_tables()}
        scratch = eng.scratch_dir
        leftovers = [p.name for p in scratch.rglob("*.utf8.csv")]
    assert leftovers == []  # transcoded copies (raw PII) are gone once their rows are stored
    return summary, tables


def _fails(tmp_path: Path, params: dict) -> IngestError:
    with Engine(tmp_path / "run") as eng, pytest.raises(IngestError) as err:
        ingest(eng, params, now=NOW)
    return err.value


def _helpful(err: IngestError, path: Path, *, fix: str, row: str | None = None, column: str | None = None) -> str:
    """Assert the message names the file, the row and column where given, and the fix; return it."""
    msg = str(err)
    assert str(path) in msg, msg
    assert "How to fix:" in msg and fix in msg.split("How to fix:", 1)[1], msg
    if row is not None:
        assert row in msg, msg
    if column is not None:
        assert column in msg, msg
    return msg


def _records(data: bytes, encoding: str = "utf-8", delimiter: str = ",") -> int:
    """Data records in a CSV file, counted independently of the reader: Python's csv module."""
    text = data.decode(encoding).lstrip("\ufeff")
    rows = [r for r in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter) if r]
    return len(rows) - 1


def _source_rows(summary, name: str) -> int:
    return summary.quality["sources"][name]["rows_read"]


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / "data" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path


def _orders_source(path: Path, **options) -> dict:
    return {"name": "orders", "kind": "orders", "file": path, "columns": IDS, **options}


def _orders(tables: dict, source: str = "orders") -> pd.DataFrame:
    o = tables["orders"]
    return o[o.source == source].sort_values("row_number").reset_index(drop=True)


# -- encodings and byte-order marks ----------------------------------------------------------------------
def test_utf8_bom_is_not_part_of_the_first_column_name(tmp_path):
    data = codecs.BOM_UTF8 + ORDERS.encode("utf-8")
    path = _write(tmp_path, "bom.csv", data)
    summary, tables = _ingest(tmp_path, _params(tmp_path, _orders_source(path)))
    o = _orders(tables)
    assert o.order_id.tolist() == ["O1", "O2"] and o.amount.tolist() == [12.5, 7.0]
    assert _source_rows(summary, "orders") == _records(data, "utf-8-sig") == 2


def test_utf16_with_bom_undeclared_loads_and_says_what_to_set(tmp_path):
    data = ("order_id,customer_id,order_ts,amount\r\nO1,C1,2026-01-02,12.5\r\nO2,张三,2026-01-03,7\r\n"
            ).encode("utf-16")  # Excel's "Unicode text": UTF-16 LE with a BOM, CRLF
    path = _write(tmp_path, "u16.csv", data)
    summary, tables = _ingest(tmp_path, _params(tmp_path, _orders_source(path)))
    o = _orders(tables)
    assert o.order_id.tolist() == ["O1", "O2"] and o.source_customer_id.tolist() == ["C1", "张三"]
    assert _source_rows(summary, "orders") == _records(data, "utf-16") == 2
    assert any("encoding: utf-16" in w and "u16.csv" in w for w in summary.warnings)


def test_utf16_without_bom_says_exactly_what_to_set(tmp_path):
    path = _write(tmp_path, "u16le.csv", ORDERS.encode("utf-16-le"))
    err = _fails(tmp_path, _params(tmp_path, _orders_source(path)))
    _helpful(err, path, fix="`encoding: utf-16-le`")


def test_utf8_bom_on_a_file_declared_gbk_is_read_as_utf8(tmp_path):
    data = codecs.BOM_UTF8 + "order_id,customer_id,order_ts,amount\nO1,王伟,2026-01-02,12.5\n".encode("utf-8")
    path = _write(tmp_path, "bom_gbk.csv", data)
    summary, tables = _ingest(tmp_path, _params(tmp_path, _orders_source(path, encoding="gbk")))
    assert _orders(tables).source_customer_id.tolist() == ["王伟"]
    assert _source_rows(summary, "orders") == _records(data, "utf-8-sig") == 1
    assert any("utf-8-sig" in w for w in summary.warnings)


def test_gbk_undeclared_names_row_column_and_encoding(tmp_path):
    data = "source_customer_id,name,city\nK1,Wang,Shanghai\nK2,赵六,广州\n".encode("gbk")
    path = _write(tmp_path, "cards.csv", data)
    err = _fails(tmp_path, _params(tmp_path, {"name": "cards", "kind": "contacts", "file": path}))
    msg = _helpful(err, path, fix="`encoding: gb18030`", row="row 2", column="column 'name'")
    assert "latin-1" not in msg


def test_gb18030_only_characters_load_when_declared_and_are_named_when_not(tmp_path):
    # U+20000 and U+3400 exist in GB18030 (four-byte sequences) but not in GBK
    data = "source_customer_id,name\nK1,王𠀀\nK2,㐀明\n".encode("gb18030")
    path = _write(tmp_path, "rare.csv", data)
    err = _fails(tmp_path, _params(tmp_path, {"name": "cards", "kind": "contacts", "file": path,
                                              "encoding": "gbk"}))
    _helpful(err, path, fix="`encoding: gb18030`", row="row 1", column="column 'name'")

    params = _params(tmp_path, {"name": "cards", "kind": "contacts", "file": path, "encoding": "gb18030"})
    params["privacy"]["keep_pii"] = True
    summary, tables = _ingest(tmp_path, params)
    assert _source_rows(summary, "cards") == _records(data, "gb18030") == 2
    assert summary.quality["sources"]["cards"]["rows_loaded"] == 2
    assert sorted(tables["customers"].name.dropna()) == sorted(["王𠀀", "㐀明"])


# -- line structure ----------------------------------------------------------------------------------------
def test_trailing_empty_lines_are_not_rows(tmp_path):
    data = (ORDERS + "\n\n\r\n\n").encode("utf-8")
    path = _write(tmp_path, "trailing.csv", data)
    summary, tables = _ingest(tmp_path, _params(tmp_path, _orders_source(path)))
    assert _orders(tables).order_id.tolist() == ["O1", "O2"]
    assert _source_rows(summary, "orders") == _records(data) == 2
    assert summary.quality["sources"]["orders"]["rows_quarantined"] == 0


def test_quoted_fields_with_embedded_newlines_keep_their_text(tmp_path):
    data = ('order_id,customer_id,order_ts,amount,items\nO1,C1,2026-01-02,12.5,"tea\nand cake"\n'
            'O2,C2,2026-01-03,7,"one, ""two""\nthree\nfour"\nO3,C3,2026-01-04,1,x\n').encode("utf-8")
    path = _write(tmp_path, "multiline.csv", data)
    summary, tables = _ingest(tmp_path, _params(tmp_path, _orders_source(path)))
    o = _orders(tables)
    assert o["items"].tolist() == ["tea\nand cake", 'one, "two"\nthree\nfour', "x"]
    assert o.row_number.tolist() == [1, 2, 3]  # records, not physical lines
    assert _source_rows(summary, "orders") == _records(data) == 3


def test_crlf_and_lf_mixed_in_one_file_load(tmp_path):
    data = b"order_id,customer_id,order_ts,amount\r\nO1,C1,2026-01-02,12.5\nO2,C2,2026-01-03,7\r\nO3,C3,2026-01-04,3\n"
    path = _write(tmp_path, "mixed.csv", data)
    summary, tables = _ingest(tmp_path, _params(tmp_path, _orders_source(path)))
    o = _orders(tables)
    assert o.order_id.tolist() == ["O1", "O2", "O3"] and o.amount.tolist() == [12.5, 7.0, 3.0]
    assert _source_rows(summary, "orders") == _records(data) == 3


def test_crlf_and_lf_mixed_in_a_gbk_file_load(tmp_path):
    data = "会员号,姓名\r\nK1,王伟\nK2,赵六\r\n".encode("gbk")
    path = _write(tmp_path, "mixed_gbk.csv", data)
    params = _params(tmp_path, {"name": "cards", "kind": "contacts", "file": path, "encoding": "gbk",
                                "columns": {"会员号": "source_customer_id", "姓名": "name"}})
    params["privacy"]["keep_pii"] = True
    summary, tables = _ingest(tmp_path, params)
    assert sorted(tables["customers"].name.dropna()) == ["王伟", "赵六"]
    assert _source_rows(summary, "cards") == _records(data, "gbk") == 2


@pytest.mark.parametrize("line, reason", [("O2,C2,2026-01-03,7,surplus", "malformed_row:too_many_fields"),
                                          ("O2,C2,2026-01-03", "malformed_row:too_few_fields")])
def test_ragged_rows_are_quarantined_with_their_reason(tmp_path, line, reason):
    data = f"order_id,customer_id,order_ts,amount\nO1,C1,2026-01-02,12.5\n{line}\nO3,C3,2026-01-04,3\n".encode()
    path = _write(tmp_path, "ragged.csv", data)
    summary, tables = _ingest(tmp_path, _params(tmp_path, _orders_source(path)))
    assert _orders(tables).order_id.tolist() == ["O1", "O3"]
    assert _orders(tables).row_number.tolist() == [1, 3]
    q = tables["quarantine"]
    assert q[q.source == "orders"][["row_number", "reason"]].values.tolist() == [[2, reason]]
    assert _source_rows(summary, "orders") == _records(data) == 3


# -- headers -----------------------------------------------------------------------------------------------
def test_duplicate_names_of_extra_columns_are_both_kept(tmp_path):
    # (not "note": a header naming personal data is not stored, see test_stage's personal-data test)
    data = b"order_id,customer_id,order_ts,amount,coupon,coupon\nO1,C1,2026-01-02,12.5,first,second\n"
    path = _write(tmp_path, "dup_extra.csv", data)
    summary, tables = _ingest(tmp_path, _params(tmp_path, _orders_source(path)))
    extras = dict(_orders(tables).extras.iloc[0])
    assert extras == {"coupon": "first", "coupon_2": "second"}
    assert _source_rows(summary, "orders") == _records(data) == 1


def test_duplicate_names_of_a_canonical_column_are_refused(tmp_path):
    path = _write(tmp_path, "dup_amount.csv", b"order_id,customer_id,order_ts,amount,amount\nO1,C1,2026-01-02,12.5,13\n")
    err = _fails(tmp_path, _params(tmp_path, _orders_source(path)))
    msg = _helpful(err, path, fix="rename the columns", row="header row", column="column 'amount'")
    assert "positions 4, 5" in msg


def test_headers_with_spaces_and_full_width_characters_match(tmp_path):
    # full-width Latin letters, an ideographic space after a Chinese header, spaces around names
    data = " ｏｒｄｅｒ＿ｉｄ ,会员号\u3000, Order TS ,ａｍｏｕｎｔ\nO1,K1,2026-01-02,12.5\n".encode("utf-8")
    path = _write(tmp_path, "fullwidth.csv", data)
    summary, tables = _ingest(tmp_path, _params(tmp_path, {"name": "orders", "kind": "orders", "file": path,
                                                           "columns": {"会员号": "source_customer_id"}}))
    o = _orders(tables)
    assert o[["order_id", "source_customer_id", "amount"]].values.tolist() == [["O1", "K1", 12.5]]
    assert o.order_ts.tolist() == [pd.Timestamp("2026-01-02")]
    assert _source_rows(summary, "orders") == _records(data) == 1


def test_missing_required_column_lists_the_columns_and_the_closest(tmp_path):
    path = _write(tmp_path, "no_amount.csv", b"order_id,customer_id,order_ts,amout_cny\nO1,C1,2026-01-02,12.5\n")
    err = _fails(tmp_path, _params(tmp_path, _orders_source(path)))
    msg = _helpful(err, path, fix="columns: {amout_cny: amount}", column="column 'amount'")
    assert "order_id, customer_id, order_ts, amout_cny" in msg and "closest to 'amount': 'amout_cny'" in msg


def test_semicolon_delimiter_undeclared_is_blamed_on_the_delimiter(tmp_path):
    data = "order_id;customer_id;order_ts;amount\nO1;C1;2026-01-02;12,50\nO2;C2;2026-01-03;7\n".encode()
    path = _write(tmp_path, "semi.csv", data)
    err = _fails(tmp_path, _params(tmp_path, _orders_source(path)))  # maps customer_id: not the mapping's fault
    msg = _helpful(err, path, fix='`delimiter: ";"`', row="header row")
    assert "columns mapping" not in msg


# -- empty files -------------------------------------------------------------------------------------------
def test_zero_byte_file_is_refused(tmp_path):
    path = _write(tmp_path, "empty.csv", b"")
    err = _fails(tmp_path, _params(tmp_path, _orders_source(path)))
    assert "0 bytes" in _helpful(err, path, fix="export the data again")


def test_header_only_file_is_no_rows_not_a_crash(tmp_path):
    path = _write(tmp_path, "header_only.csv", b"order_id,customer_id,order_ts,amount\n")
    base = _write(tmp_path, "more_orders.csv", ORDERS.encode())
    summary, tables = _ingest(tmp_path, _params(tmp_path, _orders_source(path),
                                                _orders_source(base, name="more_orders")))
    assert summary.quality["sources"]["orders"] == {"rows_read": 0, "rows_loaded": 0, "rows_quarantined": 0,
                                                    "duplicates_dropped": 0, "checks": {}}
    assert _orders(tables, "more_orders").order_id.tolist() == ["O1", "O2"]
    assert any("no data rows" in w and "header_only.csv" in w for w in summary.warnings)


# -- the file is something else ------------------------------------------------------------------------------
def test_parquet_named_csv_says_format_parquet(tmp_path):
    path = tmp_path / "data" / "orders.csv"
    path.parent.mkdir()
    pd.DataFrame({"order_id": ["O1"], "customer_id": ["C1"], "order_ts": ["2026-01-02"], "amount": [1.0]}
                 ).to_parquet(path)
    err = _fails(tmp_path, _params(tmp_path, _orders_source(path)))
    msg = _helpful(err, path, fix="`format: parquet`")
    assert "Parquet" in msg and "latin-1" not in msg


def test_xlsx_named_csv_says_format_xlsx(tmp_path):
    path = tmp_path / "data" / "orders.csv"
    path.parent.mkdir()
    pd.DataFrame({"order_id": ["O1"]}).to_excel(path, index=False, engine="openpyxl")
    err = _fails(tmp_path, _params(tmp_path, _orders_source(path)))
    assert "latin-1" not in _helpful(err, path, fix="`format: xlsx`")


def test_zip_named_csv_says_unzip_it(tmp_path):
    path = tmp_path / "data" / "orders.csv"
    path.parent.mkdir()
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("export/orders.csv", ORDERS)
    err = _fails(tmp_path, _params(tmp_path, _orders_source(path)))
    msg = _helpful(err, path, fix="unzip it first")
    assert "export/orders.csv" in msg and "latin-1" not in msg


def test_gzip_named_csv_is_decompressed_and_loaded(tmp_path):
    data = ORDERS.encode()
    path = _write(tmp_path, "orders.csv", gzip.compress(data))
    summary, tables = _ingest(tmp_path, _params(tmp_path, _orders_source(path)))
    o = _orders(tables)
    assert o.order_id.tolist() == ["O1", "O2"] and o.amount.tolist() == [12.5, 7.0]
    assert _source_rows(summary, "orders") == _records(data) == 2


def test_binary_file_gets_no_latin1_advice(tmp_path):
    path = _write(tmp_path, "orders.csv", bytes(range(256)) * 40)
    err = _fails(tmp_path, _params(tmp_path, _orders_source(path)))
    msg = _helpful(err, path, fix="`path:`")
    assert "latin-1" not in msg and "NUL" in msg


# -- the file system ------------------------------------------------------------------------------------------
def test_unreadable_file_is_a_message_not_a_traceback(tmp_path, monkeypatch):
    path = _write(tmp_path, "locked.csv", ORDERS.encode())
    params = _params(tmp_path, _orders_source(path))
    if os.geteuid() != 0:
        path.chmod(0)
    else:  # root reads through chmod 000 (as in CI containers): refuse the open the way the OS would
        real_open = open

        def refusing_open(file, *args, **kwargs):
            if Path(file) == path:
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(readers, "open", refusing_open, raising=False)
    try:
        err = _fails(tmp_path, params)
    finally:
        path.chmod(0o644)
    assert "permission denied" in _helpful(err, path, fix="read permission")


def test_file_that_vanished_after_validation(tmp_path):
    path = _write(tmp_path, "gone.csv", ORDERS.encode())
    params = _params(tmp_path, _orders_source(path))
    path.unlink()
    err = _fails(tmp_path, params)
    assert "file not found" in _helpful(err, path, fix="check")


# -- Excel --------------------------------------------------------------------------------------------------
def _workbook(path: Path, sheets: dict[str, list[list]], *, merge: str | None = None) -> Path:
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        ws = book.create_sheet(title)
        for row in rows:
            ws.append(row)
        if merge:
            ws.merge_cells(merge)
    path.parent.mkdir(exist_ok=True)
    book.save(path)
    return path


_XLSX_ROWS = [["order_id", "customer_id", "order_ts", "amount"],
              ["O1", "C1", dt.datetime(2026, 1, 2, 10, 30), 12.5], ["O2", "C2", dt.date(2026, 1, 3), 7]]


def test_excel_title_rows_above_the_header_are_skipped(tmp_path):
    path = _workbook(tmp_path / "data" / "orders.xlsx",
                     {"Orders": [["Monthly orders export"], ["generated 2026-02-01"], [], *_XLSX_ROWS]})
    summary, tables = _ingest(tmp_path, _params(tmp_path, _orders_source(path)))
    o = _orders(tables)
    assert o.order_id.tolist() == ["O1", "O2"] and o.amount.tolist() == [12.5, 7.0]
    assert o.row_number.tolist() == [1, 2]
    assert _source_rows(summary, "orders") == 2
    assert any("header is on row 4" in w for w in summary.warnings)


def test_excel_dates_stored_as_serial_numbers_load_as_dates(tmp_path):
    # Excel stores every date as a serial day number; a date-formatted cell reads as a date, and a serial
    # left in General format (46025.5: 2026-01-03 12:00) is still a date in a date column
    rows = [*_XLSX_ROWS, ["O3", "C3", 46025.5, 1]]
    path = _workbook(tmp_path / "data" / "orders.xlsx", {"Orders": rows})
    book = openpyxl.load_workbook(path)
    assert isinstance(book["Orders"]["C2"].value, dt.datetime) and book["Orders"]["C2"].number_format != "General"
    assert book["Orders"]["C4"].value == 46025.5
    summary, tables = _ingest(tmp_path, _params(tmp_path, _orders_source(path)))
    assert _orders(tables).order_ts.tolist() == [pd.Timestamp("2026-01-02 10:30"), pd.Timestamp("2026-01-03"),
                                                 pd.Timestamp("2026-01-03 12:00")]


def test_excel_with_several_sheets_and_no_sheet_lists_them(tmp_path):
    path = _workbook(tmp_path / "data" / "orders.xlsx", {"Notes": [["read me"]], "2026": _XLSX_ROWS})
    err = _fails(tmp_path, _params(tmp_path, _orders_source(path)))
    msg = _helpful(err, path, fix='`sheet: "Notes"`')
    assert "'Notes', '2026'" in msg

    summary, tables = _ingest(tmp_path, _params(tmp_path, _orders_source(path, sheet="2026")))
    assert _orders(tables).order_id.tolist() == ["O1", "O2"]


def test_excel_wrong_sheet_name_lists_the_sheets_and_the_closest(tmp_path):
    path = _workbook(tmp_path / "data" / "orders.xlsx", {"Notes": [["read me"]], "Orders 2026": _XLSX_ROWS})
    err = _fails(tmp_path, _params(tmp_path, _orders_source(path, sheet="orders2026")))
    assert "'Notes', 'Orders 2026'" in _helpful(err, path, fix='`sheet: "Orders 2026"`')


def test_excel_merged_header_cells_name_the_column(tmp_path):
    rows = [["order_id", "customer", None, "order_ts", "amount"],
            ["O1", "C1", "Wang", dt.date(2026, 1, 2), 12.5]]
    path = _workbook(tmp_path / "data" / "orders.xlsx", {"Orders": rows}, merge="B1:C1")
    err = _fails(tmp_path, _params(tmp_path, {"name": "orders", "kind": "orders", "file": path,
                                              "columns": {"customer": "source_customer_id"}}))
    _helpful(err, path, fix="unmerge the header cells", row="header row", column="C (position 3)")


def test_reader_warnings_reach_the_runs_warnings_file(tmp_path):
    from crmlib.status import WARNINGS_FILE

    path = _write(tmp_path, "header_only.csv", b"order_id,customer_id,order_ts,amount\n")
    base = _write(tmp_path, "more_orders.csv", ORDERS.encode())
    _ingest(tmp_path, _params(tmp_path, _orders_source(path), _orders_source(base, name="more_orders")))
    lines = (tmp_path / "run" / WARNINGS_FILE).read_text(encoding="utf-8").splitlines()
    assert any('"read orders"' in line and "no data rows" in line for line in lines)
