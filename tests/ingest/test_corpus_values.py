"""Bad-value corpus: amounts, scores, dates and text as real exports write them, through the whole ingest.

Every case is one small file (the value under test in data row 1, a plain control row after it) read
as its own source of one ingest run. For each case exactly one of these holds:

* the value the user meant is loaded, exactly;
* the row is quarantined with a reason naming the column and how to fix it;
* (the duplicate-source cases) ingest raises an ``IngestError`` naming both sources, the file and the fix,
  or - with ``ingest.allow_duplicate_sources`` - loads both and records a warning;

and always: rows read == the file's data lines (counted here from the text) == loaded + quarantined +
duplicates. File-level problems (encodings, delimiters, Excel) are in ``test_corpus_files.py``.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from crmlib.engine import Engine
from crmlib.ingest.errors import IngestError
from crmlib.ingest.stage import ingest
from crmlib.params import validate_params
from crmlib.status import read_warnings
from tests.ingest.support.fixture import NOW, stand_in_resolver

# header per kind; the case's value goes into ``column``, the other columns get plain values
_ROW = {
    "orders": {"order_id": "O{n}", "source_customer_id": "C{n}", "order_ts": "2026-03-01 10:00:00",
               "amount": "7.25", "channel": "web", "status": "completed"},
    "spend": {"date": "2026-03-01", "channel": "email", "campaign_id": "EM_{n}", "cost": "7.25",
              "impressions": "100", "clicks": "3"},
    "touchpoints": {"touch_ts": "2026-03-01 10:00:00", "channel": "email", "source_customer_id": "C{n}",
                    "campaign_id": "EM_1", "cost": "7.25"},
    "surveys": {"source_customer_id": "C{n}", "response_ts": "2026-03-01 10:00:00", "nps_score": "7",
                "csat": "4", "category": "app"},
    "contacts": {"source_customer_id": "C{n}", "city": "Shanghai", "loyalty_points": "10"},
}
# the output table of each kind, and the value of the control row there
_TABLE = {"orders": "orders", "spend": "spend", "touchpoints": "touchpoints", "surveys": "surveys"}


@dataclass
class Case:
    """One bad (or tricky) value and what ingest must make of it."""

    id: str
    kind: str
    column: str
    value: str
    loaded: object = None            # the value the user meant (exact), or
    quarantined: tuple = ()          # substrings the reason must contain (its column and its fix)
    nulled: bool = False             # an optional column: the value is nulled, the row kept and counted
    source: dict = field(default_factory=dict)   # decimal / thousands / date_format


def _ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text)


_COMMA_FIX = ("bad_number:amount", "amount does not fit decimal '.'", "set decimal: ','")
CASES = [
    # decimal commas under the default ('.' / ','): quarantined with the fix, never 1250 or 99
    Case("decimal_comma_default", "orders", "amount", "12,50", quarantined=_COMMA_FIX),
    Case("zero_comma_default", "orders", "amount", "0,99", quarantined=_COMMA_FIX),
    Case("dot_thousands_comma_decimal_default", "orders", "amount", "1.234,50", quarantined=_COMMA_FIX),
    Case("space_thousands_comma_decimal_default", "orders", "amount", "1 234,50", quarantined=_COMMA_FIX),
    Case("euro_decimal_comma_default", "orders", "amount", "€1.234,50", quarantined=_COMMA_FIX),
    Case("grouped_default", "orders", "amount", "1,234.50", loaded=1234.5),
    Case("thousands_only_default", "orders", "amount", "1,234", loaded=1234.0),
    # the same texts with decimal ',' declared
    Case("decimal_comma_declared", "orders", "amount", "12,50", loaded=12.5, source={"decimal": ","}),
    Case("zero_comma_declared", "orders", "amount", "0,99", loaded=0.99, source={"decimal": ","}),
    Case("dot_thousands_declared", "orders", "amount", "1.234,50", loaded=1234.5, source={"decimal": ","}),
    Case("space_thousands_declared", "orders", "amount", "1 234,50", loaded=1234.5, source={"decimal": ","}),
    Case("euro_declared", "orders", "amount", "€1.234,50", loaded=1234.5, source={"decimal": ","}),
    Case("decimal_point_under_comma", "orders", "amount", "1,234.50", source={"decimal": ","},
         quarantined=("bad_number:amount", "it looks like a decimal point", "set decimal: '.'")),
    Case("swiss_thousands_declared", "orders", "amount", "1'234.50", loaded=1234.5, source={"thousands": "'"}),
    Case("no_thousands_declared", "orders", "amount", "1,234", source={"thousands": ""},
         quarantined=("bad_number:amount", "thousands none")),
    Case("bad_grouping", "orders", "amount", "1,23,456",
         quarantined=("bad_number:amount", "group exactly three digits")),
    # currency marks and full-width forms
    Case("yen_grouped", "orders", "amount", "¥1,234.50", loaded=1234.5),
    Case("fullwidth_yen_digits", "orders", "amount", "￥１２３．５", loaded=123.5),
    Case("fullwidth_comma_grouping", "orders", "amount", "１，２３４．５０", loaded=1234.5),
    Case("rmb_code", "orders", "amount", "RMB 88", loaded=88.0),
    Case("yuan_suffix", "orders", "amount", "88元", loaded=88.0),
    Case("hk_dollar", "orders", "amount", "HK$1,000", loaded=1000.0),
    Case("currency_code_after", "orders", "amount", "1,234.50 CNY", loaded=1234.5),
    # non-finite and absurd
    Case("huge_1e308", "orders", "amount", "1e308", quarantined=("out_of_range:amount", "max_abs_amount")),
    Case("overflow_1e400", "orders", "amount", "1e400", quarantined=("bad_number:amount", "not a finite number")),
    Case("inf", "orders", "amount", "inf", quarantined=("bad_number:amount", "not a finite number")),
    Case("nan", "orders", "amount", "NaN", quarantined=("bad_number:amount", "not a finite number")),
    Case("absurd_2e9", "orders", "amount", "2e9", quarantined=("out_of_range:amount", "raise ingest.max_abs_amount")),
    Case("absurd_negative", "orders", "amount", "-2000000000", quarantined=("out_of_range:amount",)),
    # signs
    Case("unicode_minus", "orders", "amount", "\u221212.50", loaded=-12.5),
    Case("fullwidth_minus", "orders", "amount", "－12.50", loaded=-12.5),
    Case("trailing_minus", "orders", "amount", "12.50-", loaded=-12.5),
    Case("accounting_parentheses", "orders", "amount", "(12.50)", loaded=-12.5),
    Case("accounting_with_currency", "orders", "amount", "(¥1,234.50)", loaded=-1234.5),
    Case("minus_inside_parentheses", "orders", "amount", "(-12.50)",
         quarantined=("bad_number:amount", "two signs or a minus inside parentheses")),
    # the other numeric columns
    Case("spend_cost_decimal_comma_default", "spend", "cost", "12,50",
         quarantined=("bad_number:cost", "set decimal: ','")),
    Case("spend_cost_declared", "spend", "cost", "1.234,50", loaded=1234.5, source={"decimal": ","}),
    Case("spend_impressions_grouped", "spend", "impressions", "12,345", loaded=12345.0),
    Case("spend_clicks_absurd", "spend", "clicks", "5e12", nulled=True),
    Case("touch_cost_inf", "touchpoints", "cost", "-inf", quarantined=("bad_number:cost", "not a finite number")),
    Case("survey_nps_fullwidth", "surveys", "nps_score", "９", loaded=9.0),
    Case("survey_csat_decimal_comma", "surveys", "csat", "4,5", quarantined=("bad_number:csat", "set decimal: ','")),
    Case("loyalty_points_decimal_comma", "contacts", "loyalty_points", "12,50", nulled=True),
    # dates
    Case("iso_offset_colon", "orders", "order_ts", "2026-03-01T06:05:09+08:00", loaded=_ts("2026-03-01 06:05:09")),
    Case("iso_offset_compact", "orders", "order_ts", "2026-02-28 23:05:09-0800", loaded=_ts("2026-03-01 15:05:09")),
    Case("iso_zulu", "orders", "order_ts", "2026-03-01T06:05:09Z", loaded=_ts("2026-03-01 14:05:09")),
    Case("slash_short", "orders", "order_ts", "2026/3/1", loaded=_ts("2026-03-01")),
    Case("slash_time", "orders", "order_ts", "2026/03/01 14:05", loaded=_ts("2026-03-01 14:05")),
    Case("chinese_date", "orders", "order_ts", "2026年3月1日", loaded=_ts("2026-03-01")),
    Case("chinese_date_time", "orders", "order_ts", "2026年3月1日 14:05", loaded=_ts("2026-03-01 14:05")),
    Case("chinese_date_padded", "orders", "order_ts", "2026年03月01日", loaded=_ts("2026-03-01")),
    Case("excel_serial", "orders", "order_ts", "45352", loaded=_ts("2024-03-01")),
    Case("excel_serial_noon", "orders", "order_ts", "45352.5", loaded=_ts("2024-03-01 12:00")),
    Case("excel_serial_out_of_range", "orders", "order_ts", "12345",
         quarantined=("bad_date:order_ts", "set date_format:")),
    Case("no_such_day", "orders", "order_ts", "2026-02-30",
         quarantined=("bad_date:order_ts", "not a calendar date")),
    Case("no_such_month", "orders", "order_ts", "2026/13/01 10:00",
         quarantined=("bad_date:order_ts", "not a calendar date")),
    Case("day_month_ambiguous", "orders", "order_ts", "03/04/2026",
         quarantined=("bad_date:order_ts", "never guessed", "date_format: '%d/%m/%Y'")),
    Case("day_month_declared", "orders", "order_ts", "03/04/2026", loaded=_ts("2026-04-03"),
         source={"date_format": "%d/%m/%Y"}),
    Case("not_matching_date_format", "orders", "order_ts", "2026.3.x", source={"date_format": "%d/%m/%Y"},
         quarantined=("bad_date:order_ts", "date_format '%d/%m/%Y'")),
    Case("spend_chinese_date", "spend", "date", "2026年3月1日", loaded=dt.date(2026, 3, 1)),
    # text is data: loaded as the literal text
    Case("formula_text", "orders", "channel", '=HYPERLINK("x")', loaded='=HYPERLINK("x")'),
    Case("phone_like_text", "orders", "channel", "+86 138 0013 8000", loaded="+86 138 0013 8000"),
    Case("script_text", "orders", "status", "<script>alert(1)</script>", loaded="<script>alert(1)</script>"),
    Case("chinese_text", "spend", "campaign_id", "双11 > 微信:朋友圈/首页", loaded="双11 > 微信:朋友圈/首页"),
]
CONTROL = {"amount": 7.25, "cost": 7.25}


def _write_csv(path: Path, kind: str, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(_ROW[kind]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def _data_lines(path: Path) -> int:
    """The file's data lines, counted from the text (no field here holds a line break)."""
    return len(path.read_text(encoding="utf-8").splitlines()) - 1


def _case_row(kind: str, n: int, overrides: dict, decimal: str = ".") -> dict:
    """A plain row of ``kind``, written with the source's decimal mark, then the case's value."""
    row = {k: v.format(n=n) for k, v in _ROW[kind].items()}
    if decimal == ",":
        row = {k: v.replace("7.25", "7,25") for k, v in row.items()}
    return row | overrides


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    sources = []
    for i, case in enumerate(CASES):
        path = root / f"{case.id}.csv"
        decimal = case.source.get("decimal", ".")
        _write_csv(path, case.kind, [_case_row(case.kind, 2 * i, {case.column: case.value}, decimal),
                                     _case_row(case.kind, 2 * i + 1, {}, decimal)])
        sources.append({"name": case.id, "kind": case.kind, "path": path.name, **case.source})
    params = validate_params({"run": {"name": "corpus", "as_of": "2026-06-30", "timezone": "Asia/Shanghai"},
                              "sources": sources, "ingest": {"identity": {"method": "deterministic"}}}, root)
    with Engine(root / "run") as eng:
        ingest(eng, params, now=NOW, resolve=stand_in_resolver())
        tables = {name: pd.read_parquet(eng.table_path(name)) for name in (*_TABLE.values(), "quarantine")}
        yield {"root": root, "quality": eng.read_json("data_quality")["sources"], "tables": tables}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_value_is_loaded_as_meant_or_quarantined_with_the_fix(corpus_run, case):
    quality = corpus_run["quality"][case.id]
    lines = _data_lines(corpus_run["root"] / f"{case.id}.csv")
    assert lines == 2
    assert quality["rows_read"] == lines == (quality["rows_loaded"] + quality["rows_quarantined"]
                                            + quality["duplicates_dropped"])
    # one suspicious value beside a plain control row is not a column that mixes decimal marks
    assert not any(k.startswith("mixed_decimal_marks") for k in quality["checks"])
    quarantine = corpus_run["tables"]["quarantine"]
    mine = quarantine[quarantine.source == case.id]
    if case.quarantined:
        assert quality["rows_quarantined"] == 1 and mine.row_number.tolist() == [1]
        reason = mine.reason.item()
        assert case.column in reason
        for part in case.quarantined:
            assert part in reason, (part, reason)
        assert case.value.strip() in mine.raw.item()  # the value is in the row's raw text
    else:
        assert quality["rows_quarantined"] == 0, mine.reason.tolist()
        assert quality["rows_loaded"] == 2
    if case.nulled:
        assert quality["checks"].get(f"invalid_{case.column}_nulled") == 1
    if case.loaded is not None:
        table = corpus_run["tables"][_TABLE[case.kind]]
        rows = table[table.source == case.id].set_index("row_number")
        got = rows.loc[1, case.column]
        if isinstance(case.loaded, dt.date) and not isinstance(case.loaded, pd.Timestamp):
            got = pd.Timestamp(got).date()
        assert got == case.loaded
        if case.column in CONTROL:
            assert rows.loc[2, case.column] == CONTROL[case.column]  # the control row is untouched


def test_every_numeric_column_of_the_contract_is_in_the_corpus():
    numeric = {("orders", "amount"), ("spend", "cost"), ("spend", "impressions"), ("spend", "clicks"),
               ("touchpoints", "cost"), ("surveys", "nps_score"), ("surveys", "csat"), ("contacts", "loyalty_points")}
    assert numeric <= {(c.kind, c.column) for c in CASES}


# -- the same data listed twice -----------------------------------------------------------------------
ORDERS = "order_id,source_customer_id,order_ts,amount\nO1,C1,2026-03-01 10:00,10\nO2,C2,2026-03-02 10:00,20\n"


def _two_sources(root: Path, second_path: str, allow: bool) -> dict:
    return validate_params({
        "run": {"name": "dups", "as_of": "2026-06-30"},
        "sources": [{"name": "shop_a", "kind": "orders", "path": "orders.csv"},
                    {"name": "shop_b", "kind": "orders", "path": second_path}],
        "ingest": {"identity": {"method": "deterministic"}, "allow_duplicate_sources": allow}}, root)


def _setup(tmp_path: Path, how: str) -> str:
    (tmp_path / "orders.csv").write_text(ORDERS, encoding="utf-8")
    if how == "same_path":
        return "./orders.csv"
    if how == "symlink":
        (tmp_path / "link.csv").symlink_to(tmp_path / "orders.csv")
        return "link.csv"
    (tmp_path / "copy_of_orders.csv").write_text(ORDERS, encoding="utf-8")
    return "copy_of_orders.csv"


@pytest.mark.parametrize("how", ["same_path", "symlink", "same_content"])
def test_the_same_data_twice_is_an_error_naming_both_sources_and_the_fix(tmp_path, how):
    second = _setup(tmp_path, how)
    params = _two_sources(tmp_path, second, allow=False)
    with Engine(tmp_path / "run") as eng, pytest.raises(IngestError) as info:
        ingest(eng, params, now=NOW, resolve=stand_in_resolver())
    msg = str(info.value)
    assert "'shop_a'" in msg and "'shop_b'" in msg and "orders.csv" in msg
    assert "allow_duplicate_sources: true" in msg and "How to fix" in msg
    assert ("same content" in msg) == (how == "same_content")
    assert not (tmp_path / "run" / "tables" / "orders.parquet").exists()  # nothing loaded


@pytest.mark.parametrize("how", ["same_path", "same_content"])
def test_the_same_data_twice_with_the_flag_loads_both_and_warns(tmp_path, how):
    second = _setup(tmp_path, how)
    params = _two_sources(tmp_path, second, allow=True)
    with Engine(tmp_path / "run") as eng:
        summary = ingest(eng, params, now=NOW, resolve=stand_in_resolver())
        quality = eng.read_json("data_quality")["sources"]
        orders = pd.read_parquet(eng.table_path("orders"))
        warnings = read_warnings(eng, "ingest")
    for name, path in (("shop_a", "orders.csv"), ("shop_b", second)):
        q = quality[name]
        assert q["rows_read"] == _data_lines(tmp_path / path) == q["rows_loaded"] + q["rows_quarantined"] + q["duplicates_dropped"]
    assert orders.groupby("source").amount.sum().to_dict() == {"shop_a": 30.0, "shop_b": 30.0}
    recorded = [w["message"] for w in warnings if w["step"] == "sources"]
    assert len(recorded) == 1 and "'shop_a' and 'shop_b'" in recorded[0] and "count twice" in recorded[0]
    assert recorded[0] in summary.warnings


def test_different_files_of_equal_size_are_not_duplicates(tmp_path):
    (tmp_path / "orders.csv").write_text(ORDERS, encoding="utf-8")
    (tmp_path / "other.csv").write_text(ORDERS.replace("O1,C1", "O3,C3"), encoding="utf-8")
    params = _two_sources(tmp_path, "other.csv", allow=False)
    with Engine(tmp_path / "run") as eng:
        ingest(eng, params, now=NOW, resolve=stand_in_resolver())
        assert read_warnings(eng, "ingest") == []
        assert len(pd.read_parquet(eng.table_path("orders"))) == 4


# -- quarantined contact rows leak no personal data ---------------------------------------------------
CONTACTS = ("customer_id,name,email,phone,wechat_id,备注\n"
            "C1,Wang Wei,wang.wei@example.com,13800138000,wangwei88,VIP\n"
            ",Li Na,li.na@example.com,13900139000,lina_wx,call Li Na at 13900139001\n")
ORDERS_WITH_RECIPIENT = ("order_id,source_customer_id,order_ts,amount,收货人,shop\n"
                         "O1,C1,2026-03-01 10:00,10,张三,S1\nO2,C1,2026-03-01 10:00,oops,李四,S2\n"
                         "O3,C1,2026-03-01 10:00,10,王五,S3,a field too many\n")
PERSONAL = ("Li Na", "li.na@example.com", "13900139000", "lina_wx", "13900139001", "李四", "王五")


@pytest.mark.parametrize("keep_pii", [False, True])
def test_quarantined_rows_redact_unmapped_personal_columns(tmp_path, keep_pii):
    (tmp_path / "crm.csv").write_text(CONTACTS, encoding="utf-8")
    (tmp_path / "orders.csv").write_text(ORDERS_WITH_RECIPIENT, encoding="utf-8")
    params = validate_params({
        "run": {"name": "pii", "as_of": "2026-06-30"},
        "sources": [{"name": "crm", "kind": "contacts", "path": "crm.csv",
                     "columns": {"customer_id": "source_customer_id"}},
                    {"name": "shop", "kind": "orders", "path": "orders.csv"}],
        "privacy": {"keep_pii": keep_pii}, "ingest": {"identity": {"method": "deterministic"}}}, tmp_path)
    with Engine(tmp_path / "run") as eng:
        ingest(eng, params, now=NOW, resolve=stand_in_resolver())
        quarantine = pd.read_parquet(eng.table_path("quarantine")).set_index(["source", "row_number"])
        quality = eng.read_json("data_quality")["sources"]
    for name, path in (("crm", "crm.csv"), ("shop", "orders.csv")):
        q = quality[name]
        assert q["rows_read"] == _data_lines(tmp_path / path) == q["rows_loaded"] + q["rows_quarantined"] + q["duplicates_dropped"]
    assert quarantine.loc[("crm", 2), "reason"] == "missing_value:source_customer_id"
    assert quarantine.loc[("shop", 2), "reason"].startswith("bad_number:amount")
    assert quarantine.loc[("shop", 3), "reason"].startswith("malformed_row")
    stored = (tmp_path / "run" / "tables" / "quarantine.parquet").read_bytes()
    text = " ".join(quarantine.raw)
    if keep_pii:
        assert all(p in text for p in PERSONAL)
    else:
        assert not any(p in text for p in PERSONAL)
        assert not any(p.encode() in stored for p in PERSONAL)
        assert quarantine.loc[("crm", 2), "raw"] == ",<redacted>,<redacted>,<redacted>,<redacted>,<redacted>"
        assert quarantine.loc[("shop", 2), "raw"] == "O2,C1,2026-03-01 10:00,oops,<redacted>,S2"  # shop is kept
        assert quarantine.loc[("shop", 3), "raw"] == "<redacted: malformed orders line>"


def test_a_column_mixing_decimal_marks_is_flagged(tmp_path):
    # '12,500' is 12500 under the declared default; beside '12,50' (a decimal comma) the run says so
    text = "source_customer_id,order_ts,amount\nC1,2026-03-01,\"12,50\"\nC2,2026-03-01,\"12,500\"\nC3,2026-03-01,8\n"
    (tmp_path / "orders.csv").write_text(text, encoding="utf-8")
    params = validate_params({"run": {"name": "mixed", "as_of": "2026-06-30"},
                              "sources": [{"name": "shop", "kind": "orders", "path": "orders.csv"}],
                              "ingest": {"identity": {"method": "deterministic"}}}, tmp_path)
    with Engine(tmp_path / "run") as eng:
        summary = ingest(eng, params, now=NOW, resolve=stand_in_resolver())
        q = eng.read_json("data_quality")["sources"]["shop"]
        warnings = [w["message"] for w in read_warnings(eng, "ingest")]
    assert q["rows_read"] == _data_lines(tmp_path / "orders.csv") == 3
    assert (q["rows_loaded"], q["rows_quarantined"]) == (2, 1)
    assert q["checks"]["mixed_decimal_marks:amount"] == 1
    assert any("set decimal: ',' on source shop" in w for w in warnings)
    assert any("set decimal: ',' on source shop" in w for w in summary.warnings)
