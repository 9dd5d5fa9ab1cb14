"""The run page's decision brief (crmlib.brief + report.write_run_index) on hand-built run folders: the
numbers in the findings and KPIs, findings left out for absent or broken tables, the change against the
previous successful run with its trend line, and the arithmetic of "How the totals relate"."""

import json
import re
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pytest

from crmlib import brief
from crmlib.report import write_run_index
from crmlib.status import record_warning

AS_OF = "2026-06-30"


def _manifest(run_id: str, *, name: str = "weekly", started: str = "2026-07-01T06:00:00+00:00",
              status: str = "ok") -> dict:
    stages = [{"stage": s, "status": "ok", "html": f"0{i}_{s}.html", "duration_s": 1.0, "warnings": []}
              for i, s in enumerate(["ingest", "segmentation", "roi", "ab_tests"], start=1)]
    return {"run_id": run_id, "run_name": name, "started": started, "status": status,
            "as_of": {"as_of": AS_OF, "source": "params"}, "stages": stages,
            "params": {"run": {"currency": "CNY", "timezone": "Asia/Shanghai", "name": name},
                       "segmentation": {"churn": {"thresholds": {"high": 0.3, "medium": 0.5}}}},
            "inputs": [{"source": "shop", "kind": "orders", "path": "/data/shop.csv"}],
            "data_quality": {"shop": {"rows_read": 10, "rows_loaded": 7, "rows_quarantined": 2,
                                      "duplicates_dropped": 1}}}


def _orders() -> pd.DataFrame:
    # up to 2026-06-30: purchases a 100 + 50, b 200, d 70 + 80 (gross 500, 5 orders); refund a -20;
    # c's purchase of 30 is after the as-of date
    rows = [("a", "2026-06-01 10:00", 100.0), ("a", "2026-06-20 10:00", 50.0), ("a", "2026-06-21 10:00", -20.0),
            ("b", "2026-01-10 10:00", 200.0), ("c", "2026-07-05 10:00", 30.0), ("d", "2026-05-01 10:00", 70.0),
            ("d", "2026-06-30 23:00", 80.0)]
    df = pd.DataFrame(rows, columns=["customer_key", "order_ts", "amount"])
    df["order_ts"] = pd.to_datetime(df["order_ts"])
    df["status"] = ["completed" if a > 0 else "refund" for a in df["amount"]]
    return df


def _build_run(root: Path, run_id: str = "weekly_now", **manifest_kw) -> tuple[Path, dict]:
    run = root / run_id
    tables = run / "tables"
    tables.mkdir(parents=True)
    (run / "audiences").mkdir()
    _orders().to_parquet(tables / "orders.parquet")
    pd.DataFrame({"customer_key": ["a", "d", "b"], "segment": ["Champions", "Champions", "Hibernating"],
                  "monetary": [130.0, 150.0, 200.0]}).to_parquet(tables / "rfm.parquet")
    # top quarter by spend: the three customers who spent 1,000; two of them at risk (P(alive) 0.2, 0.4)
    pd.DataFrame({"customer_key": list("pqrstuvw"),
                  "revenue": [1000.0, 1000.0, 1000.0, 10, 10, 10, 10, 10],
                  "p_alive": [0.2, 0.4, 0.9, 0.1, 0.9, 0.9, 0.9, 0.9],
                  "churn_risk": ["high", "medium", "low", "high", "low", "low", "low", "low"],
                  "clv": [80.0, 120.0, 400.0, 0.0, 50.0, 50.0, 50.0, 50.0]}).to_parquet(tables / "clv.parquet")
    (tables / "clv_model.json").write_text(json.dumps({"horizon": 52, "time_unit": "W"}))
    roi = pd.DataFrame({"model": ["linear"] * 3 + ["markov"] * 3,
                        "channel": ["search", "display", "email"] * 2,
                        "cost": [1000.0, 2000.0, 5.0] * 2,
                        "revenue": [3000.0, 1000.0, 600.0, 2500.0, 1600.0, 500.0],
                        "roas": [3.0, 0.5, 120.0, 2.5, 0.8, 100.0],
                        "new_customers": [10.0, 5.0, 5.0, 8.0, 7.0, 5.0],
                        "level": "channel"})
    roi.to_parquet(tables / "roi.parquet")
    pd.DataFrame({"channel": ["search", "display", "email"], "spend": [1000.0, 2000.0, 5.0],
                  "identified": [False, False, False], "roas_low": [-1.0, -3.0, None],
                  "roas_high": [9.0, 2.0, None], "roas": [None, None, None],
                  "reason": ["interval includes 0", "interval includes 0", "not modelled: spend share below 1%"]}
                 ).to_parquet(tables / "mmm.parquet")
    (tables / "roi_journeys.json").write_text(json.dumps({
        "summary": {"conversions": 5, "conversion_value": 500.0, "touched_conversions": 3, "touched_value": 330.0},
        "conventions": {"lookback_days": 30}}))
    # the A/B stage's advice: exp_open needs 2,200 users per arm (1,200 more): keep running; exp_flat would
    # need 9,000 per arm, 9x as many as now: stop (the stage leaves n_more_per_arm empty then)
    pd.DataFrame({"experiment_id": ["exp_win", "exp_open", "exp_srm", "exp_flat"],
                  "verdict": ["ship", "inconclusive", "blocked: SRM", "inconclusive"],
                  "primary_metric": ["conversion"] * 4,
                  "rel_lift": [0.10, 0.03, 0.2, 0.001], "seq_rel_ci_low": [0.02, -0.05, None, -0.04],
                  "seq_rel_ci_high": [0.18, 0.11, None, 0.04],
                  "next_step": ["ship treatment", "keep running: about 1,200 more users per arm are needed", "",
                                "stop: confirming a lift this small would take about 9,000 users per arm"],
                  "action": ["ship", "keep running", "fix the split", "stop"],
                  "n_more_per_arm": [None, 1200.0, None, None], "n_needed_per_arm": [None, 2200.0, None, 9000.0],
                  "n_control": [1000, 1000, 1000, 1000], "n_treatment": [1000, 1000, 1000, 1000]}
                 ).to_parquet(tables / "ab_verdicts.parquet")
    pd.DataFrame({"audience": ["segment__champions", "churn_risk__high"], "kind": ["segment", "churn_risk"],
                  "value": ["Champions", "high"], "customers": [2, 2], "written": [1, 2],
                  "path": ["audiences/segment__champions.parquet", "audiences/churn_risk__high.parquet"]}
                 ).to_parquet(tables / "audiences.parquet")
    for name in ("segment__champions", "churn_risk__high", "churn_warning"):
        (run / "audiences" / f"{name}.csv").write_text("customer_key\np\n")
    pd.DataFrame({"customer_key": ["p", "q"]}).to_parquet(run / "audiences" / "churn_warning.parquet")
    (run / "02_segmentation.html").write_text('<h2 id="RFM-segments">RFM segments</h2><h2 id="Churn-risk">x</h2>')
    for page in ("01_ingest.html", "03_roi.html", "04_ab_tests.html"):
        (run / page).write_text("<h1>page</h1>")
    record_warning(run, "segmentation", "Gamma-Gamma spend model", "needs 3 repeat buyers; found 1")
    manifest = _manifest(run_id, **manifest_kw)
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run, manifest


def _by_topic(found: list[brief.Finding]) -> dict[str, brief.Finding]:
    return {f.topic: f for f in found}


def test_findings_state_the_numbers_of_the_tables(tmp_path: Path):
    run, manifest = _build_run(tmp_path)
    found, notes = brief.findings(run, manifest)
    topics = _by_topic(found)
    assert notes == []
    assert 5 <= len(found) <= brief.MAX_FINDINGS and found[-1].topic == "health"
    seg = topics["segments"]
    assert "Champions (2 customers, 66.7% of buyers) bring 58.3% of net revenue" in seg.text
    assert "(CNY 280.00)" in seg.text
    assert ("02_segmentation.html#RFM-segments", "Segmentation page") in seg.links
    assert any(href == "audiences/segment__champions.csv" for href, _label in seg.links)
    churn = topics["churn"]
    assert "2 of the 3 most valuable customers" in churn.text and "P(alive) below 50.0%" in churn.text
    assert "they spent CNY 2,000" in churn.text and "about 1 of them" in churn.text  # 0.8 + 0.6 expected lapsed
    assert "lists the 2 most valuable" in churn.action
    assert churn.links[0][0] == "02_segmentation.html#Churn-risk"
    channels = topics["channels"].text
    assert "Under all 2 attribution models, search (ROAS 2.50 to 3.00) return more than they cost" in channels
    assert "display return less than they cost under every model" in channels
    assert "email cost under 1.0% of the spend" in channels
    unranked = topics["unranked"]
    assert "cannot rank display, search" in unranked.text and "CNY 3,000 of spend (99.8% of the total)" in unranked.text
    assert "holdout experiment: pause display (CNY 2,000 spent)" in unranked.action
    assert "ship exp_win (conversion +10.0%, always-valid interval +2.0% to +18.0%)" in topics["ab_ship"].text
    assert "exp_open (conversion +3.0%, always-valid interval -5.0% to +11.0%): keep running: about 1,200 more" \
        in topics["ab_open"].text
    assert topics["ab_open"].action == ("Keep running exp_open. Stop exp_flat: treat the change as having no "
                                        "effect.")
    assert "exp_srm" in topics["ab_blocked"].text and "sample-ratio mismatch" in topics["ab_blocked"].text
    health = topics["health"].text
    assert "1 model step(s) could not be computed" in health and "Gamma-Gamma spend model (segmentation)" in health
    assert "2 of 10 input rows (20.0%)" in health


def test_kpis_are_business_measures_read_from_the_tables(tmp_path: Path):
    run, manifest = _build_run(tmp_path)
    values, orders, notes = brief.kpis(run, manifest)
    k = {kpi.key: kpi for kpi in values}
    assert notes == []
    assert k["customers"].value == 3  # a, b, d bought up to the as-of date; c only after it
    assert k["active_customers"].value == 2 and "90 days (2026-04-02 to 2026-06-30)" in k["active_customers"].counts
    assert k["repeat_rate"].value == pytest.approx(2 / 3)
    assert k["revenue"].value == pytest.approx(480.0) and "net of refunds" in k["revenue"].counts
    assert k["aov"].value == pytest.approx(100.0)
    assert k["mean_clv"].value == pytest.approx(100.0) and "52 weeks" in k["mean_clv"].counts
    assert k["churn_share"].value == pytest.approx(3 / 8)
    assert k["marketing_cost"].value == pytest.approx(3005.0)
    assert k["blended_roas"].value == pytest.approx(4600.0 / 3005.0)
    assert k["cac"].value == pytest.approx(3005.0 / 20.0)


def test_reconciliation_steps_add_up(tmp_path: Path):
    run, manifest = _build_run(tmp_path)
    b = brief.build_brief(run, manifest)
    numbers = {label: float(re.sub(r"[^0-9.]", "", value)) for label, value, _links in
               b.reconciliation["orders"] + b.reconciliation["revenue"]}
    assert numbers["order rows loaded (purchases and refunds)"] == 7
    assert numbers["minus refund rows"] == 1
    assert numbers["purchase orders, all dates"] == numbers["order rows loaded (purchases and refunds)"] - 1 == 6
    assert numbers[f"minus purchases after {AS_OF}"] == 1
    assert numbers[f"purchase orders up to {AS_OF}"] == 6 - 1 == 5
    assert numbers["of which with a marketing touch in the 30 days before (attributed to channels)"] == 3
    gross, refunds = numbers[f"gross sales of purchases up to {AS_OF}"], numbers[f"minus refunds up to {AS_OF}"]
    assert (gross, refunds) == (500.0, 20.0)
    assert numbers[f"net revenue up to {AS_OF}"] == gross - refunds == 480.0
    assert numbers["of which orders with a marketing touch (attributed revenue)"] == 330.0
    page = write_run_index(run, manifest).read_text(encoding="utf-8")
    assert "How the totals relate" in page and "CNY 480.00" in page


def test_absent_tables_leave_their_findings_out_without_a_note(tmp_path: Path):
    run, manifest = _build_run(tmp_path)
    for name in ("rfm.parquet", "mmm.parquet", "roi.parquet", "ab_verdicts.parquet"):
        (run / "tables" / name).unlink()
    found, notes = brief.findings(run, manifest)
    assert {f.topic for f in found} == {"churn", "health"} and notes == []
    page = write_run_index(run, manifest).read_text(encoding="utf-8")
    assert "most valuable customers" in page and "blended ROAS" not in page


def test_a_corrupt_table_leaves_a_note_and_the_page_is_written(tmp_path: Path):
    run, manifest = _build_run(tmp_path)
    (run / "tables" / "rfm.parquet").write_bytes(b"not parquet at all")
    (run / "tables" / "orders.parquet").write_bytes(b"PAR1 broken")
    page = write_run_index(run, manifest).read_text(encoding="utf-8")
    assert "The segments finding is left out: tables/rfm.parquet could not be read." in page
    assert "Some KPIs are left out: tables/orders.parquet could not be read." in page
    assert "2 of the 3 most valuable customers" in page  # the other findings are still there
    assert "Traceback" not in page and "Error" not in page


def test_change_against_the_previous_successful_run_and_trend_line(tmp_path: Path):
    reports = tmp_path / "reports"

    def earlier(run_id: str, started: str, customers: float, *, status: str = "ok", name: str = "weekly") -> None:
        folder = reports / run_id
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text(json.dumps(_manifest(run_id, name=name, started=started,
                                                                   status=status)))
        (folder / brief.KPIS_FILE).write_text(json.dumps({"currency": "CNY", "kpis": {"customers": customers,
                                                                                      "revenue": 400.0}}))

    earlier("w1", "2026-06-17T06:00:00+00:00", 1.0)
    earlier("w2", "2026-06-24T06:00:00+00:00", 2.0)
    earlier("w3_failed", "2026-06-30T06:00:00+00:00", 100.0, status="failed")  # not a successful run
    earlier("other", "2026-06-30T07:00:00+00:00", 50.0, name="other_params")  # another params name
    run, manifest = _build_run(reports, "w4")
    history = brief.run_history(reports, manifest)
    assert [r["run_id"] for r in history] == ["w1", "w2"]
    page = write_run_index(run, manifest).read_text(encoding="utf-8")
    card = page[page.index("<span class='k'>customers</span>"):]
    card = card[:card.index("</div>")]
    assert "+50.0% vs the previous run" in card  # 3 customers now, 2 in w2
    polyline = re.search(r"points='([^']+)'", card).group(1)
    assert len(polyline.split()) == 3  # w1, w2 and this run
    ys = [float(p.split(",")[1]) for p in polyline.split()]
    assert ys[0] > ys[1] > ys[2]  # rising values are drawn upwards
    revenue = page[page.index("<span class='k'>revenue</span>"):]
    assert "+20.0% vs the previous run" in revenue[:revenue.index("</div>")]  # 480 vs 400
    written = json.loads((run / brief.KPIS_FILE).read_text())
    assert written["kpis"]["customers"] == 3 and written["currency"] == "CNY"


def test_first_run_has_no_change_and_no_trend(tmp_path: Path):
    run, manifest = _build_run(tmp_path / "reports")
    page = write_run_index(run, manifest).read_text(encoding="utf-8")
    assert "no earlier run to compare" in page and "<svg" not in page


def test_names_from_the_data_are_escaped_on_the_run_page(tmp_path: Path):
    run, manifest = _build_run(tmp_path)
    roi = pd.read_parquet(run / "tables" / "roi.parquet")
    roi["channel"] = roi["channel"].replace({"search": "<script>alert(1)</script>"})
    roi.to_parquet(run / "tables" / "roi.parquet")
    page = write_run_index(run, manifest).read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_failed_and_skipped_stages_are_said_in_the_last_finding(tmp_path: Path):
    run, manifest = _build_run(tmp_path)
    manifest["stages"][2].update(status="failed", error="ValueError: spend file unreadable")
    manifest["stages"][3].update(status="skipped", reason="no input of kind experiments in the params")
    found, _notes = brief.findings(run, manifest)
    health = found[-1]
    assert health.topic == "health"
    assert "Stage(s) roi failed: their findings are missing." in health.text
    assert "Stage(s) ab_tests did not run: their findings are missing." in health.text
    assert health.action.startswith("Fix the failed stage")


@pytest.fixture
def chinese():
    """The report language set to zh-CN for one test (pages written while it is set are in Chinese)."""
    from crmlib.i18n import set_language

    set_language("zh-CN")
    yield
    set_language("en")


def _visible_text(page: str) -> str:
    from tests.i18n_support import _Text

    parser = _Text()
    parser.feed(page)
    return "\n".join(parser.pieces)


def test_run_page_and_reports_index_of_a_chinese_run_are_in_chinese(tmp_path: Path, chinese):
    from crmlib.i18n import _
    from crmlib.report import write_reports_index
    from crmlib.runner import DEFAULT_SALT_WARNING
    from tests.i18n_support import english_left

    run, manifest = _build_run(tmp_path)
    # the A/B stage writes its next steps in the run's language; without them the brief words its own
    verdicts = pd.read_parquet(run / "tables" / "ab_verdicts.parquet").drop(columns=["next_step"])
    verdicts.to_parquet(run / "tables" / "ab_verdicts.parquet")
    manifest["operator_warnings"] = [DEFAULT_SALT_WARNING]
    manifest["stages"][3].update(status="skipped", html=None, reason="no input of kind experiments in the params",
                                 reason_text=_("no input of kind {kinds} in the params").format(kinds=_("experiments")))
    manifest["stages"][1]["warnings"] = [{"step": "Gamma-Gamma spend model", "message": "需要 3 位复购客户"}]
    # the stage page's headings are in Chinese too (nbconvert's anchors: the heading, URL-quoted)
    headings = [_("Segmentation and customer lifetime value"), _("Segments"), _("Churn risk")]
    (run / "02_segmentation.html").write_text("".join(f'<h2 id="{quote(h.replace(" ", "-"))}">{h}</h2>'
                                                      for h in headings), encoding="utf-8")
    page = write_run_index(run, manifest).read_text(encoding="utf-8")
    for heading in headings[1:]:
        assert f"href='02_segmentation.html#{quote(heading)}'" in page
    assert f"#{quote(headings[0])}'" not in page
    index = write_reports_index(tmp_path).read_text(encoding="utf-8")
    assert page.startswith('<!DOCTYPE html>\n<html lang="zh-CN">') and '<html lang="zh-CN">' in index
    # the only Latin words left: the user's names (channels, experiments, metric, files, run and source),
    # the time zone, UTC, a model's name and the settings a reader types (CRM_PII_SALT, privacy.salt)
    data = {"weekly", "weekly_now", "shop", "search", "display", "email", "exp_win", "exp_open", "exp_flat",
            "exp_srm", "conversion", "Asia", "Shanghai", "audiences", "segment__champions", "churn_warning",
            "churn_risk__high", "manifest", "sha", "UTC", "Gamma-Gamma", "CRM_PII_SALT", "privacy", "salt",
            "README"}
    assert english_left(run / "index.html", data) == []
    assert english_left(tmp_path / "index.html", data) == []
    text = _visible_text(page)
    for english in ("What this run says", "Key measures", "How the totals relate", "Input files and data quality",
                    "ok", "skipped", "ab_tests", "segmentation", "customers", "marketing cost"):
        assert _(english) != english and _(english) in text
    assert _(DEFAULT_SALT_WARNING) in text and DEFAULT_SALT_WARNING not in text
    assert _("no input of kind {kinds} in the params").format(kinds=_("experiments")) in text
    # sentences run on without the space English puts after a full stop
    assert "。 " not in text


def test_the_embedded_font_has_every_chinese_character_of_the_run_page(tmp_path: Path, chinese):
    import base64
    import io

    from fontTools.ttLib import TTFont

    from crmlib.report import _CJK_CHARS

    run, manifest = _build_run(tmp_path)
    page = write_run_index(run, manifest).read_text(encoding="utf-8")
    fonts = re.findall(r"src:url\(data:font/woff;base64,([A-Za-z0-9+/=]+)\)", page)
    assert len(fonts) == 1
    cmap = TTFont(io.BytesIO(base64.b64decode(fonts[0]))).getBestCmap()
    chinese_chars = set(_CJK_CHARS.findall(_visible_text(page)))
    assert len(chinese_chars) > 100  # the page is in Chinese, not a few names
    assert sorted(c for c in chinese_chars if ord(c) not in cmap) == []
