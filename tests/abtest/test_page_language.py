"""The A/B page in the report's language (issue #13 item 8), and which interval each result row shows.

The stage stores its codes in English (verdicts, roles, method parts) so that every rule and test reads
them the same way in any language; the page shows them through the catalog.
"""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from crmlib import i18n  # noqa: E402
from crmlib.abtest import stage  # noqa: E402
from crmlib.abtest.analysis import SEQUENTIAL_METHOD, method_text  # noqa: E402
from crmlib.abtest.plotting import plot_cumulative_lift  # noqa: E402

STORED_METHOD = ("CUPED (pooled theta, adjusted means), sample variance (ddof=1); Welch t (Satterthwaite df), "
                 "unpooled SE; abs CI from same SE; rel CI delta method; "
                 + SEQUENTIAL_METHOD.format(tuning="5000"))


@pytest.fixture
def chinese():
    i18n.set_language("zh-CN")
    yield
    i18n.set_language("en")


def test_method_text_is_unchanged_in_english():
    assert method_text(STORED_METHOD) == STORED_METHOD


def test_method_text_translates_every_part_and_keeps_the_setting(chinese):
    text = method_text(STORED_METHOD + "; a part nobody wrote")
    assert "Welch t 检验（Satterthwaite 自由度）" in text and "绝对区间使用同一标准误" in text
    assert "渐近置信序列（调节参数 5000）" in text  # the template matched and the number carried over
    assert text.endswith("；a part nobody wrote")  # a part the catalog does not know is shown as it is
    assert "unpooled" not in text and "asymptotic" not in text


def _results(correction: str = "holm") -> pd.DataFrame:
    """Treatment rows of ``ab_results``: a primary metric alone, three exploratory ones, one guardrail."""
    return pd.DataFrame({
        "experiment_id": ["e"] * 5 + ["blocked"],
        "role": ["primary", "exploratory", "exploratory", "exploratory", "guardrail", "primary"],
        "p_value": [0.01, 0.02, 0.3, 0.5, 0.04, 0.2],
        "correction": [correction] * 4 + ["none (intersection-union)", correction],
        "verdict": ["better", "inconclusive", "inconclusive", "inconclusive", "guardrail pass", "blocked: SRM"],
    })


def test_each_result_row_says_whether_its_interval_is_the_one_the_result_uses():
    labels = stage._interval_basis(_results())
    assert labels[0] == "the one the result uses"                      # a family of one: nothing to correct
    assert labels[1:4] == ["uncorrected; the result is Holm-corrected over 3 comparisons"] * 3
    assert labels[4] == "the one the result uses"                      # guardrails are not corrected
    assert labels[5] == ""                                             # a blocked experiment has no result
    assert stage._interval_basis(_results("bh"))[1] == (
        "uncorrected; the result is Benjamini-Hochberg-corrected over 3 comparisons")


def test_cumulative_chart_reads_in_chinese(chinese):
    d = pd.date_range("2026-01-01", periods=4)
    cum = pd.DataFrame({"experiment_id": "e", "metric": "conversion", "variant": "t", "date": d,
                        "rel_lift": [0.3, 0.2, 0.15, 0.12], "rel_ci_low": [-0.2, -0.05, 0.0, 0.02],
                        "rel_ci_high": [0.8, 0.45, 0.3, 0.22], "seq_rel_ci_low": [-0.6, -0.3, -0.15, -0.08],
                        "seq_rel_ci_high": [1.2, 0.7, 0.45, 0.32]})
    from crmlib import plotting

    with matplotlib.rc_context():
        plotting.use_report_style()  # the bundled CJK font, as on a page
        ax = plot_cumulative_lift(cum, "e")
        ax.figure.canvas.draw()
    assert ax.get_title() == "e：conversion 的累计提升"
    assert ax.get_ylabel() == "相对提升" and ax.get_xlabel() == "截至该日已分组的用户"
    assert [t.get_text() for t in ax.get_legend().get_texts()][0] == "t：提升"
    offset = ax.xaxis.get_major_formatter().get_offset()
    assert offset.startswith("2026年01月") and not any(c.isalpha() and c.isascii() for c in offset)  # no "Jan"
    plt.close("all")


def test_stage_tables_keep_english_codes_and_the_page_shows_them_in_chinese(tmp_path, synthetic_factory, chinese):
    from crmlib.engine import Engine

    run = tmp_path / "r"
    params = synthetic_factory(run)
    with Engine(run) as eng:
        stage.run_ab_tests(SimpleNamespace(engine=eng, params=params))
        verdicts = stage.verdict_table(eng, params).set_index("experiment_id")
        results = pd.read_parquet(eng.table_path("ab_results"))
        assert verdicts.loc["checkout_button", "verdict"] == "ship"          # codes stay English
        assert verdicts.loc["broken_split", "verdict"] == "blocked: SRM"
        assert {"primary", "secondary", "guardrail"} <= set(results["role"])

        shown = stage.verdict_view(eng, params).shown.set_index("实验")
        assert shown.loc["checkout_button", "结论"] == "上线"
        assert shown.loc["broken_split", "结论"] == "已拦截：样本比例失衡（SRM）"
        assert shown.loc["checkout_button", "下一步"] == "上线 treatment"  # the step is written in the run's language

        rows = stage.result_view(eng, params).shown
        assert set(rows["角色"]) == {"主要指标", "次要指标", "护栏指标", "探索性指标"}
        assert "显著更好" in set(rows["结果"]) and not set(rows["结果"]) & {"better", "inconclusive", "primary"}
        secondary = rows[(rows["实验"] == "checkout_button") & (rows["角色"] == "次要指标")]
        assert set(secondary["所示区间"]) == {"未校正；结果经 Holm 校正（共 2 项比较）"}

        notes = stage.method_notes(eng, params).data
        assert "Welch t 检验" in notes and "unpooled" not in notes and "power_achieved" not in notes
