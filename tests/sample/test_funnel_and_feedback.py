"""The sample's web funnel and survey feedback, measured from the written files against truth/."""

from __future__ import annotations

import json

import pandas as pd
import pytest


STEPS = ["page_view", "product_view", "add_to_cart", "checkout", "purchase"]
AS_OF_END = pd.Timestamp("2026-07-01")


def test_funnel_steps_are_ordered_within_each_session(sample):
    events = pd.read_parquet(sample / "web_events.parquet")
    steps = events[events.event_type.isin(STEPS)].copy()
    steps["step"] = steps.event_type.map({s: i for i, s in enumerate(STEPS)})
    steps = steps.sort_values(["session_id", "event_ts", "step"])
    going_back = steps.groupby("session_id").step.diff() < 0
    assert not going_back.any()
    assert not steps.duplicated(["session_id", "event_ts"]).any()
    reached = steps.groupby(["session_id", "step"]).size().unstack(fill_value=0) > 0
    for k in range(1, len(STEPS)):  # nobody reaches a step without the one before it
        assert not (reached[k] & ~reached[k - 1]).any(), STEPS[k]


def test_every_purchase_event_is_one_clean_online_sale(sample):
    events = pd.read_parquet(sample / "web_events.parquet")
    purchases = events[events.event_type == "purchase"]
    orders = pd.read_csv(sample / "eshop_orders.csv", dtype=str, keep_default_na=False, na_values=[""])
    truth = pd.read_parquet(sample / "truth/orders.parquet")
    orders["dirty"] = truth[truth.source == "eshop_orders"].dirty.to_numpy()
    clean = orders[(orders.status == "completed") & orders.dirty.isna()].copy()
    clean["ts"] = pd.to_datetime(clean.order_ts, format="%Y-%m-%d %H:%M:%S")
    matched = purchases.merge(clean, left_on=["source_customer_id", "event_ts"],
                              right_on=["account_id", "ts"], how="left")
    assert matched.groupby(["session_id"]).order_id.count().min() >= 1
    assert matched.order_id.notna().all()
    assert len(purchases) > 0.1 * len(clean)


def test_funnel_truth_counts_match_the_events_file(sample):
    truth = json.loads((sample / "truth/funnel.json").read_text(encoding="utf-8"))
    assert truth["steps"] == STEPS
    events = pd.read_parquet(sample / "web_events.parquet")
    device = events.groupby("session_id").device.first()
    source = events.groupby("session_id").utm_source.first()
    for step in STEPS:
        sessions = events.session_id[events.event_type == step].unique()
        direct = device.reindex(sessions).value_counts().to_dict()
        assert {d: c[step] for d, c in truth["sessions_reaching_step_by_device"].items() if c[step]} == direct
        by_source = source.reindex(sessions).value_counts().to_dict()
        assert {u: c[step] for u, c in truth["sessions_reaching_step_by_utm_source"].items() if c[step]} == by_source


def _step_rates_by_device(events: pd.DataFrame, step: str, next_step: str) -> pd.DataFrame:
    """Per device: sessions reaching ``step``, and the share of them reaching ``next_step``."""
    sessions = events.groupby("session_id").agg(device=("device", "first"))
    for name in (step, next_step):
        sessions[name] = sessions.index.isin(events.session_id[events.event_type == name])
    reached = sessions[sessions[step]]
    return reached.groupby("device").agg(n=(step, "size"), rate=(next_step, "mean"))


@pytest.mark.parametrize("step,next_step,planted_key", [("checkout", "purchase", "checkout_to_purchase"),
                                                        ("add_to_cart", "checkout", "add_to_cart_to_checkout")])
def test_measured_step_rates_per_device_are_the_planted_ones(sample, step, next_step, planted_key):
    planted = json.loads((sample / "truth/funnel.json").read_text(encoding="utf-8"))["planted_device_difference"]
    measured = _step_rates_by_device(pd.read_parquet(sample / "web_events.parquet"), step, next_step)
    assert set(measured.index) == set(planted)
    for device, row in measured.iterrows():
        p = planted[device][planted_key]
        assert row.n >= 100, device  # enough sessions on every device for a rate to mean something
        # planted over all of the device's sessions: only the rounding of a session count separates them
        assert abs(row.rate - p) <= 0.02, (device, row.rate, p)


def test_checkout_loses_mobile_web_users_far_more_often_than_desktop_users(sample):
    measured = _step_rates_by_device(pd.read_parquet(sample / "web_events.parquet"), "checkout", "purchase")
    assert measured.rate["mobile_web"] < measured.rate["desktop"] - 0.15
    assert measured.rate["mobile_web"] < measured.rate[["android_app", "ios_app"]].min()
    assert measured.rate["desktop"] > measured.rate[["android_app", "ios_app"]].max()
    assert (measured.rate < 0.9).all()  # every device now loses some checkouts


def test_abandoned_checkouts_are_logged_in_customers_on_their_own_cookies(sample):
    events = pd.read_parquet(sample / "web_events.parquet")
    purchase_sessions = events.session_id[events.event_type == "purchase"]
    stopped = events[(events.event_type == "checkout") & ~events.session_id.isin(purchase_sessions)]
    assert len(stopped) > 0
    records = pd.read_parquet(sample / "truth/records.parquet")
    account_person = records[records.source == "eshop_accounts"].set_index("source_customer_id").person_id
    cookie_person = pd.read_parquet(sample / "truth/cookies.parquet").set_index("anonymous_id").person_id
    assert stopped.source_customer_id.notna().all()
    assert (stopped.source_customer_id.map(account_person).to_numpy()
            == stopped.anonymous_id.map(cookie_person).to_numpy()).all()


@pytest.fixture(scope="module")
def answers(sample) -> pd.DataFrame:
    surveys = pd.read_csv(sample / "surveys.tsv", sep="\t", dtype=str, keep_default_na=False, na_values=[""])
    records = pd.read_parquet(sample / "truth/records.parquet")
    persons = pd.read_parquet(sample / "truth/persons.parquet")
    orders = pd.read_parquet(sample / "truth/orders.parquet")
    sales = orders[orders.is_real_order & (orders.origin != "refund")]
    last_order = sales.groupby("person_id").true_order_ts.max()
    persons["last_order"] = persons.person_id.map(last_order)
    # lapsing as truth/feedback.json defines it: dropped out, and no order in the last 180 days
    persons["lapsing"] = (~persons.alive_at_as_of & persons.last_order.notna()
                          & (persons.last_order < AS_OF_END - pd.Timedelta(days=180)))
    crm = records[records.source == "crm_contacts"].merge(persons[["person_id", "lapsing"]], on="person_id")
    answers = surveys.merge(crm[["source_customer_id", "lapsing"]], on="source_customer_id", how="left")
    assert answers.lapsing.notna().all()
    answers["nps"] = pd.to_numeric(answers.nps_score)
    return answers


def test_delivery_complaints_come_mostly_from_lapsing_customers(answers, sample):
    delivery = answers.category == "delivery"
    from_lapsing = answers.lapsing[delivery].mean()
    assert from_lapsing > 0.55
    assert from_lapsing > answers.lapsing[~delivery].mean() + 0.2
    realised = json.loads((sample / "truth/feedback.json").read_text(encoding="utf-8"))["realised"]
    assert realised["share_of_delivery_complaints_from_lapsing"] == pytest.approx(from_lapsing)


def test_detractors_name_delivery_and_price_more_than_promoters(answers):
    scored = answers.dropna(subset=["nps"])
    delivery_or_price = scored.category.isin(["delivery", "price"])
    detractors = delivery_or_price[scored.nps <= 6].mean()
    promoters = delivery_or_price[scored.nps >= 9].mean()
    assert detractors > promoters + 0.3
    assert set(answers.category) == {"delivery", "product_quality", "service", "price", "app"}


def test_comments_are_chinese_and_talk_about_their_category(answers):
    comments = answers.comment.dropna()
    assert comments.str.contains(r"[\u4e00-\u9fff]").all()
    about_delivery = answers.comment.fillna("").str.contains("物流|快递|发货|包裹|配送|到了")
    assert about_delivery[answers.category == "delivery"].mean() > 0.7
    assert about_delivery[answers.category != "delivery"].mean() == 0
