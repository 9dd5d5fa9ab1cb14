"""Injection: values from the inputs never reach a report page as live HTML, and files for people
(audience CSVs) never hold a cell a spreadsheet would run as a formula."""

from __future__ import annotations

import csv
import html
from pathlib import Path

import pandas as pd
import pytest
import yaml

from crmlib.report import escape_markdown, neutralize_formula, show, write_people_csv
from crmlib.segmentation.audiences import write_audiences

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
# what nbconvert's HTML holds where such a value is shown as text
SCRIPT_SHOWN = html.escape(SCRIPT, quote=False)
IMG_SHOWN = html.escape(IMG, quote=False)


# -- the pipeline, end to end ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def injected_run(tmp_path_factory) -> dict:
    """The 300-customer sample with script and image tags in every free-text field a report can show."""
    from crmlib.runner import run_pipeline
    from crmlib.sample import generate_sample

    base = tmp_path_factory.mktemp("injection")
    data = base / "data"
    generate_sample(data, customers=300, seed=11)
    shown = {}

    def rewrite(name, change, **read):
        path = data / name
        sep = "\t" if name.endswith(".tsv") else ","
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, **read)
        change(df)
        df.to_csv(path, sep=sep, index=False, encoding=read.get("encoding", "utf-8"))

    def touches(df):
        df.loc[df["channel"] == "display", "channel"] = SCRIPT + " display"
        df.loc[df["campaign_id"] == "SOC_DOUYIN", "campaign_id"] = IMG + "douyin"
    rewrite("touchpoints.csv", touches)
    rewrite("marketing_spend.csv", touches)
    shown["channel"], shown["campaign_id"] = SCRIPT_SHOWN + " display", IMG_SHOWN + "douyin"

    def experiments(df):
        target = df["experiment_id"] == "checkout_redesign"
        df.loc[target & (df["variant"] == "treatment"), "variant"] = IMG + "treatment"
        df.loc[target, "experiment_id"] = SCRIPT + "checkout"
    rewrite("experiments.csv", experiments)
    shown["experiment_id"], shown["variant"] = SCRIPT_SHOWN + "checkout", IMG_SHOWN + "treatment"

    def orders(df):
        df.loc[df.index % 7 == 0, "channel"] = SCRIPT + "web"
        df.loc[df.index % 11 == 0, "status"] = IMG + "status"
    rewrite("eshop_orders.csv", orders)

    def pos(df):
        df.loc[df.index % 5 == 0, "store_id"] = IMG + "store"
    rewrite("store_pos.csv", pos)

    def contacts(df):
        df.loc[df.index % 3 == 0, "city"] = SCRIPT + "city"
    rewrite("crm_contacts.csv", contacts)

    def cards(df):  # GBK with Chinese headers: city is column 6, loyalty tier column 10
        df.iloc[::2, 5] = IMG + "city"
        df.iloc[::3, 9] = SCRIPT + "tier"
    rewrite("store_cards.csv", cards, encoding="gbk")

    def surveys(df):
        df.loc[df.index % 2 == 0, "category"] = SCRIPT + "category"
        df.loc[df.index % 3 == 0, "comment"] = IMG + "comment"
    rewrite("surveys.tsv", surveys)

    events = pd.read_parquet(data / "web_events.parquet")
    has_utm = events["utm_source"].notna()
    events.loc[has_utm, "utm_source"] = SCRIPT + "utm"
    events.loc[has_utm, "utm_medium"] = IMG + "utm"
    events.loc[has_utm, "utm_campaign"] = SCRIPT + "utm campaign"
    events.to_parquet(data / "web_events.parquet", index=False)

    params = yaml.safe_load((ROOT / "params" / "sample.yaml").read_text(encoding="utf-8"))
    params["run"]["name"] = "injection"
    params["run"]["output_dir"] = str(base / "reports")
    for source in params["sources"]:
        source["path"] = str(data / Path(source["path"]).name)
    for experiment in params["ab_tests"]["experiments"]:
        if experiment["id"] == "checkout_redesign":
            experiment["id"] = SCRIPT + "checkout"
            experiment["weights"] = {"control": 0.5, IMG + "treatment": 0.5}
    params_path = base / "injection.yaml"
    params_path.write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    result = run_pipeline(params_path, run_id="injection")
    return {"result": result, "shown": shown}


@pytest.mark.pipeline
def test_no_report_page_holds_live_html_from_the_inputs(injected_run):
    result = injected_run["result"]
    pages = sorted(result.run_dir.rglob("*.html")) + sorted(result.run_dir.parent.glob("*.html"))
    stages = {s.stage: s.status for s in result.stages}
    assert stages.get("roi") in ("ok", "ok_with_warnings") and stages.get("ab_tests") in ("ok", "ok_with_warnings"), stages
    assert any(p.name.startswith("03_") for p in pages) and any(p.name.startswith("04_") for p in pages)
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert "<script>alert" not in text, page.name
        assert "<img src=x" not in text, page.name
    by_name = {p.name: p.read_text(encoding="utf-8") for p in pages}
    roi = next(t for n, t in by_name.items() if n.startswith("03_"))
    ab = next(t for n, t in by_name.items() if n.startswith("04_"))
    shown = injected_run["shown"]
    # the values are shown, as text: the check above would pass if they had silently vanished
    assert shown["channel"] in roi and shown["campaign_id"] in roi
    assert shown["experiment_id"] in ab and shown["variant"] in ab


# -- the building blocks -----------------------------------------------------------------------------------
def test_show_escapes_cells_column_names_and_caption():
    df = pd.DataFrame({"channel": [SCRIPT, "email"], IMG: [1.5, 2.0]})
    page = show(df, caption=IMG).to_html()
    assert "<script>alert" not in page and "<img src=x" not in page
    assert SCRIPT_SHOWN in page and IMG_SHOWN in page


def test_escape_markdown_keeps_quotes_readable():
    assert escape_markdown("Can't Lose \"VIP\"") == "Can't Lose \"VIP\""


def test_escape_markdown_leaves_no_markup():
    text = escape_markdown(f"{SCRIPT} [click](javascript:alert(1)) **bold** a|b\nnext")
    assert "<" not in text and ">" not in text and "\n" not in text
    assert "\\[click\\]\\(javascript:alert\\(1\\)\\)" in text and "\\*\\*bold\\*\\*" in text and "a\\|b" in text


@pytest.mark.parametrize("value", ["=HYPERLINK(\"http://x\",\"y\")", "+1+2", "-2+3", "@SUM(A1)", "\tx", "\rx"])
def test_formula_cells_get_a_leading_quote(value):
    assert neutralize_formula(value) == "'" + value


@pytest.mark.parametrize("value", ["Champions", "a=b", "", -12.5, 3, None])
def test_other_cells_are_unchanged(value):
    assert neutralize_formula(value) == value


def test_people_csv_neutralises_text_and_keeps_numbers(tmp_path):
    df = pd.DataFrame({"customer_key": ["k1", "k2"], "tier": ["=HYPERLINK(\"http://x\",\"y\")", "gold"],
                       "note": ["-12.5", "@x"], "balance": [-12.5, 3.0], "=cmd": [1, 2]})
    path = write_people_csv(df, tmp_path / "list.csv")
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["customer_key", "tier", "note", "balance", "'=cmd"]
    assert rows[1] == ["k1", "'=HYPERLINK(\"http://x\",\"y\")", "'-12.5", "-12.5", "1"]
    assert rows[2] == ["k2", "gold", "'@x", "3.0", "2"]


def test_audience_csv_beside_each_parquet(tmp_path):
    members = pd.DataFrame({"customer_key": ["a", "b", "c"],
                            "segment": ["=HYPERLINK(\"http://x\",\"y\")", "Champions", "Champions"]})
    consent = pd.DataFrame({"customer_key": ["a", "b", "c"], "consent_marketing": [True, True, False]})
    summary = write_audiences(tmp_path, members, ["segment"], consent)
    for rel in summary["path"]:
        parquet = tmp_path / rel
        people = parquet.with_suffix(".csv")
        listed = pd.read_csv(people, dtype=str, encoding="utf-8-sig")
        assert listed["customer_key"].tolist() == pd.read_parquet(parquet)["customer_key"].tolist()
    bad = summary.set_index("value").loc["=HYPERLINK(\"http://x\",\"y\")", "path"]
    listed = pd.read_csv((tmp_path / bad).with_suffix(".csv"), dtype=str, encoding="utf-8-sig")
    assert listed.to_dict("list") == {"customer_key": ["a"], "segment": ["'=HYPERLINK(\"http://x\",\"y\")"]}
