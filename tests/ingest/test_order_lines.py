"""The order_lines kind: lines read as declared, joined to their orders source, accounted for."""

from __future__ import annotations

import pandas as pd
import pytest

from crmlib.engine import Engine
from crmlib.ingest.stage import ingest
from crmlib.params import ParamsError, validate_params
from tests.ingest.support.fixture import NOW, stand_in_resolver, write_fixture

# lines of the fixture's `orders` source (tests/ingest/support/fixture.py): O1 loaded, O2 loaded once and
# once a duplicate, O3 a refund (-20), O4 quarantined (bad date), O9 loaded; OX exists nowhere
LINES_CSV = """order_id,product_id,quantity,amount,product_name,category,brand,gift_note
O1,P1,2,1000.00,面霜,护肤,BrandA,
O1,P2,1,234.50,Lip balm,makeup,BrandB,
O1,P2,1,234.50,Lip balm,makeup,BrandB,
O3,P1,-1,-20,面霜,护肤,BrandA,
O4,P3,1,10,Mask,skincare,BrandA,
OX,P1,1,10,面霜,护肤,BrandA,
O2,P4,0,99.5,Toner,skincare,BrandC,
O2,P4,-1,-99.5,Toner,skincare,BrandC,
O2,P4,abc,99.5,Toner,skincare,BrandC,
O9,P5,1,"12,50",Serum,skincare,BrandC,
O9,,1,10,Serum,skincare,BrandC,
O9,P5,1.5,5000,Serum,skincare,BrandC,call Wang 13800138000
"""


def _sources(folder, **line_options):
    params = write_fixture(folder)
    (folder / "lines.csv").write_text(LINES_CSV, encoding="utf-8")
    raw = [{k: v for k, v in s.items() if v is not None and k not in ("path",)} | {"path": s["path"]}
           for s in params["sources"]]
    raw.append({"name": "order_lines", "kind": "order_lines", "path": str(folder / "lines.csv"), **line_options})
    return raw


def _params(folder, **line_options):
    raw = {"run": {"name": "fixture", "timezone": "Asia/Shanghai", "currency": "CNY", "output_dir": "out"},
           "sources": _sources(folder, **line_options),
           "ingest": {"identity": {"method": "deterministic"}}}
    return validate_params(raw, folder)


@pytest.fixture(scope="module")
def lines_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lines")
    params = _params(root / "data", orders_source="orders")
    eng = Engine(root / "run")
    summary = ingest(eng, params, now=NOW, resolve=stand_in_resolver())
    yield eng, summary
    eng.close()


def test_lines_are_loaded_with_their_orders_customer_and_time(lines_run):
    eng, summary = lines_run
    lines = pd.read_parquet(eng.table_path("order_lines"))
    assert list(lines.columns) == ["customer_key", "order_id", "order_ts", "product_id", "quantity", "amount",
                                   "product_name", "category", "brand", "refund", "source", "row_number", "extras"]
    assert sorted(zip(lines.order_id, lines.product_id)) == [("O1", "P1"), ("O1", "P2"), ("O3", "P1"), ("O9", "P5")]
    orders = pd.read_parquet(eng.table_path("orders")).set_index("order_id")
    for _, line in lines.iterrows():  # customer and time are the order's, never re-derived
        assert line.customer_key == orders.loc[line.order_id, "customer_key"]
        assert line.order_ts == orders.loc[line.order_id, "order_ts"]
    by_row = lines.set_index("row_number")
    assert by_row.loc[4, "refund"] and not by_row.loc[1, "refund"]  # O3 has a negative amount
    assert by_row.loc[4, "amount"] == -20 and by_row.loc[4, "quantity"] == -1  # returned units, kept
    assert by_row.loc[12, "quantity"] == 1.5
    assert by_row.loc[1, "product_name"] == "面霜"
    assert "order_lines" in summary.tables


def test_bad_lines_are_quarantined_with_file_row_and_column(lines_run):
    eng, summary = lines_run
    q = pd.read_parquet(eng.table_path("quarantine"))
    q = q[q.source == "order_lines"].set_index("row_number").reason
    assert sorted(q.index) == [5, 6, 7, 8, 9, 10, 11]
    assert q[5].startswith("unknown_order:order_id") and "quarantined in source orders" in q[5]
    assert q[6].startswith("unknown_order:order_id") and "not an order of source orders" in q[6]
    assert q[7].startswith("zero_quantity:quantity")
    assert q[8].startswith("negative_quantity:quantity") and "line of a sale" in q[8]  # O2 is no refund
    assert q[9].startswith("bad_number:quantity")
    assert q[10].startswith("bad_number:amount") and "set decimal: ','" in q[10]
    assert q[11] == "missing_value:product_id"


def test_duplicates_counted_and_rows_reconcile(lines_run):
    eng, summary = lines_run
    entry = eng.read_json("data_quality")["sources"]["order_lines"]
    assert (entry["rows_read"], entry["rows_loaded"], entry["rows_quarantined"], entry["duplicates_dropped"]) == (12, 4, 7, 1)
    assert entry["checks"]["duplicate_row"] == 1 and entry["checks"]["unknown_order:order_id"] == 2
    assert list(eng.read_json("data_quality")["sources"])[-1] == "order_lines"  # params order kept


def test_line_text_with_personal_words_is_redacted_in_quarantine(tmp_path):
    folder = tmp_path / "data"
    raw_sources = _sources(folder, orders_source="orders")
    (folder / "lines.csv").write_text(LINES_CSV.replace("O9,P5,1.5,5000", "O9,P5,0,5000"), encoding="utf-8")
    params = validate_params({"run": {"name": "f", "output_dir": "out"}, "sources": raw_sources,
                              "ingest": {"identity": {"method": "deterministic"}}}, folder)
    with Engine(tmp_path / "run") as eng:
        ingest(eng, params, now=NOW, resolve=stand_in_resolver())
        q = pd.read_parquet(eng.table_path("quarantine"))
    row = q[(q.source == "order_lines") & (q.row_number == 12)]
    assert row.reason.item().startswith("zero_quantity:quantity")
    assert "13800138000" not in row.raw.item() and "<redacted>" in row.raw.item()


def test_several_orders_sources_need_orders_source(tmp_path):
    with pytest.raises(ParamsError) as exc:
        _params(tmp_path / "data")
    assert any(key == "sources[9].orders_source" and "several orders sources" in msg and "store_orders" in msg
               for key, msg in exc.value.problems)
    with pytest.raises(ParamsError) as exc:
        _params(tmp_path / "data2", orders_source="crm")
    assert any(key == "sources[9].orders_source" and "not the name of an orders source" in msg
               for key, msg in exc.value.problems)


def test_one_orders_source_is_the_default(tmp_path):
    folder = tmp_path / "data"
    sources = [s for s in _sources(folder) if s["name"] != "store_orders"]
    params = validate_params({"run": {"name": "f", "output_dir": "out"}, "sources": sources,
                              "ingest": {"identity": {"method": "deterministic"}}}, folder)
    with Engine(tmp_path / "run") as eng:
        ingest(eng, params, now=NOW, resolve=stand_in_resolver())
        assert eng.read_json("data_quality")["sources"]["order_lines"]["rows_loaded"] == 4
