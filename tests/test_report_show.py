"""crmlib.report.show: numbers through the presentation layer, few columns, top rows, downloads."""

from __future__ import annotations

import html

import numpy as np
import openpyxl
import pandas as pd
import pytest

from crmlib.report import show

SCRIPT = "<script>alert(1)</script>"


def _frame(n: int = 40) -> pd.DataFrame:
    return pd.DataFrame({
        "channel": [f"ch{i}" for i in range(n)],
        "revenue": np.linspace(1234.5678, 99999.25, n),
        "share": np.linspace(0.122, 0.5, n),
        "customers": np.arange(n, dtype=float) * 1000 + 5005,
        "p": np.full(n, 0.0004),
        "roi": np.full(n, 6202.98543),
        "extra": np.arange(n),
    })


def test_kinds_format_each_column_through_present():
    t = show(_frame(), kinds={"revenue": "money", "share": "percent", "customers": "count", "p": "pvalue",
                              "roi": "ratio"}, currency="CNY")
    first = t.shown.iloc[0]
    assert first["revenue"] == "CNY 1,235"
    assert first["share"] == "12.2%"
    assert first["customers"] == "5,005"
    assert first["p"] == "< 0.001"
    assert first["roi"] == "6,202.99"
    page = t.to_html()
    assert "CNY 1,235" in page and "5,005.000" not in page and "0.122" not in page


def test_columns_and_max_rows_limit_the_view_and_say_so():
    t = show(_frame(40), columns=["channel", "revenue"], max_rows=5)
    assert list(t.shown.columns) == ["channel", "revenue"]
    assert len(t.shown) == 5
    page = t.to_html()
    assert "top 5 of 40 rows" in page and "2 of 7 columns" in page
    assert "ch5" not in page and "extra" not in page


def test_no_repr_dict_list_or_nan_in_cells():
    df = pd.DataFrame({"n": [{"control": 1990, "treatment": 2243}, None],
                       "names": [["a", "b"], []], "x": [np.nan, 2.5], "whole": [5005.0, np.nan]})
    page = show(df).to_html()
    assert "control 1,990 · treatment 2,243" in page
    assert "a, b" in page
    for leak in ("{", "}", "[", "]", "nan", "NaN", "None", "5,005.0"):
        assert leak not in page
    assert "5,005" in page and "2.5" in page


def test_download_writes_full_csv_and_xlsx_with_formulas_neutralised(tmp_path):
    df = _frame(30)
    df.loc[0, "channel"] = "=HYPERLINK(\"http://x\",\"y\")"
    t = show(df, columns=["channel", "revenue"], max_rows=3, download="by_channel", run_dir=tmp_path)
    csv_path, xlsx_path = tmp_path / "downloads" / "by_channel.csv", tmp_path / "downloads" / "by_channel.xlsx"
    back = pd.read_csv(csv_path, encoding="utf-8-sig")
    assert len(back) == 30 and list(back.columns) == list(df.columns)  # the full table, every column
    assert back.loc[0, "channel"].startswith("'=")
    sheet = openpyxl.load_workbook(xlsx_path).active
    assert sheet.max_row == 31
    cell = sheet.cell(row=2, column=1)
    assert cell.data_type == "s" and cell.value.startswith("'=")  # text, not a live formula
    assert sheet.cell(row=2, column=2).value == pytest.approx(df.loc[0, "revenue"])  # numbers stay numbers
    page = t.to_html()
    assert "href='downloads/by_channel.csv'" in page and "href='downloads/by_channel.xlsx'" in page


def test_download_needs_a_run_dir_and_a_plain_name(tmp_path):
    with pytest.raises(ValueError):
        show(_frame(3), download="x")
    with pytest.raises(ValueError):
        show(_frame(3), download="../escape", run_dir=tmp_path)


def test_values_headers_and_caption_are_escaped():
    df = pd.DataFrame({"channel": [SCRIPT], SCRIPT: [1.5]})
    page = show(df, caption=SCRIPT).to_html()
    assert "<script>" not in page
    assert html.escape(SCRIPT) in page


def test_old_calls_still_work():
    assert show(None, caption="x") is not None
    assert show("a notice") == "a notice"
    assert show(_frame(3), digits=4).to_html().count("<tr>") == 4


@pytest.fixture
def chinese():
    from crmlib.i18n import set_language

    set_language("zh-CN")
    yield
    set_language("en")


def test_table_notes_missing_tables_and_unavailable_steps_in_english():
    from crmlib.report import Finding, key_findings
    from crmlib.status import Unavailable

    t = show(_frame(), columns=["channel", "revenue"], max_rows=5, download=None)
    assert "(top 5 of 40 rows; 2 of 7 columns)" in t.to_html()
    assert show(None, caption="ROI by channel").data == "*ROI by channel: not available for this run\\.*"
    assert show(_frame(0), caption="Budget").data == "*Budget: no rows\\.*"
    assert "<b>Ship.</b> Email won" in key_findings([Finding("Ship", "Email won")], empty="none").data
    assert Unavailable("BG/NBD purchase model", "too few repeat buyers")._repr_markdown_().startswith(
        "**BG/NBD purchase model: not computed\\.**")


def test_table_notes_missing_tables_and_unavailable_steps_in_chinese(chinese, tmp_path):
    from crmlib.i18n import _
    from crmlib.report import Finding, escape_markdown, key_findings
    from crmlib.status import Unavailable

    t = show(_frame(), columns=["channel", "revenue"], max_rows=5, download="roi", run_dir=tmp_path).to_html()
    notes = _("; ").join([_("top {n} of {m} rows").format(n=5, m=40), _("{n} of {m} columns").format(n=2, m=7)])
    assert html.escape(notes) in t and html.escape(_("full table:")) in t
    assert "top 5" not in t and "full table" not in t
    missing = show(None, caption="渠道 ROI").data
    assert missing == "*" + escape_markdown(_("{table}: not available for this run.").format(table="渠道 ROI")) + "*"
    assert "not available" not in missing
    lead = key_findings([Finding("上线", "邮件胜出")], empty="无").data
    assert f"<b>{html.escape(_('{decision}.').format(decision='上线'))}</b>" in lead and "上线.</b>" not in lead
    step = Unavailable("BG/NBD purchase model", "复购客户太少")._repr_markdown_()
    assert "not computed" not in step and escape_markdown(_("{step}: not computed.").format(
        step=_("BG/NBD purchase model"))) in step
