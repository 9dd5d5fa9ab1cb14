"""Recommendations: metrics against hand-computed values, co-occurrence against scipy, lists and reasons."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from crmlib.engine import Engine
from crmlib.i18n import set_language
from crmlib.segmentation.recommend import (
    REASON_POPULAR,
    REASON_REPEAT,
    REASON_SEGMENT,
    REASON_WITH,
    REASONS,
    ProductRecommender,
    RecommendSettings,
    co_occurrence,
    evaluate_recommendations,
    metric_summary,
    purchase_lines,
    ranking_metrics,
    reason_text,
    recommendation_tables,
    repurchase_score,
)
from crmlib.status import CannotCompute

AS_OF = "2024-06-30"
CATEGORY = {"A": "food", "B": "food", "C": "food", "D": "drinks", "E": "drinks", "F": "care", "G": "care",
            "H": "toys", "I": "toys", "J": "toys", "K": "toys", "L": "toys"}


def make_lines(baskets: list[tuple[str, str, str, list[str]]], *, refunds: list[tuple[str, str, str, str]] = ()):
    """Order lines from (customer, order, date, products) baskets; refunds as (customer, order, date, product)."""
    rows = []
    for customer, order, day, products in baskets:
        for product in products:
            rows.append((customer, order, day, product, 1, 10.0))
    for customer, order, day, product in refunds:
        rows.append((customer, order, day, product, 1, -10.0))
    frame = pd.DataFrame(rows, columns=["customer_key", "order_id", "order_ts", "product_id", "quantity", "amount"])
    frame["order_ts"] = pd.to_datetime(frame["order_ts"])
    frame["product_name"] = "name of " + frame["product_id"]
    frame["category"] = frame["product_id"].map(CATEGORY).fillna("other")
    frame["brand"] = "brand"
    return frame


@pytest.fixture()
def engine(tmp_path):
    with Engine(tmp_path / "run") as eng:
        yield eng


def lines_in(engine, frame: pd.DataFrame):
    engine.write_table("order_lines", frame)
    return engine.table("order_lines")


def shop_baskets() -> list[tuple[str, str, str, list[str]]]:
    """Twelve customers; A and B sell together, C is a monthly staple of c1, H..L are best-sellers."""
    baskets = []
    for i in range(8):
        baskets.append((f"c{i + 2}", f"ab{i}", f"2024-0{1 + i % 5}-1{i}", ["A", "B"] + (["H"] if i < 5 else [])))
    for i in range(4):
        baskets.append(("c1", f"staple{i}", (dt.date(2024, 3, 3) + dt.timedelta(days=30 * i)).isoformat(), ["C"]))
    for i, extra in enumerate(["I", "J", "K", "L", "I", "J", "K", "I", "J", "I"]):
        baskets.append((f"c{10 + i % 3}", f"pop{i}", f"2024-05-{10 + i}", [extra, "D"] if i < 4 else [extra]))
    baskets.append(("c1", "mixed", "2024-02-01", ["A", "E", "F", "G"]))
    return baskets


# -- metrics ---------------------------------------------------------------------------------------
def test_ranking_metrics_match_hand_computed_values():
    # k = 3. c1: list hits at rank 2 only, 2 relevant; c2: hits at ranks 1 and 3, 2 relevant; c3: no hit, 1 relevant
    hits = np.array([[False, True, False], [True, False, True], [False, False, False]])
    m = ranking_metrics(hits, np.array([2, 2, 1]))
    g2, g3 = 1 / np.log2(3), 1 / np.log2(4)  # gains of ranks 2 and 3 (rank 1 gains 1)
    assert m["precision"].tolist() == pytest.approx([1 / 3, 2 / 3, 0])
    assert m["recall"].tolist() == pytest.approx([1 / 2, 1, 0])
    assert m["ndcg"].tolist() == pytest.approx([g2 / (1 + g2), (1 + g3) / (1 + g2), 0])
    assert m["ndcg"].tolist() == pytest.approx([0.386853, 0.919721, 0], abs=1e-6)
    # AP: precision at each hit's rank, over min(k, relevant)
    assert m["map"].tolist() == pytest.approx([(1 / 2) / 2, (1 + 2 / 3) / 2, 0])
    assert m["hit_rate"].tolist() == [1, 1, 0]


def test_metric_summary_interval_is_196_sd_over_root_n():
    mean, low, high = metric_summary(np.array([1 / 3, 2 / 3, 0]))
    # sd (n - 1) of (1/3, 2/3, 0) is 1/3, so the half-width is 1.96 / 3 / sqrt(3) = 0.377202
    assert mean == pytest.approx(1 / 3)
    assert (low, high) == pytest.approx((1 / 3 - 0.377202, 1 / 3 + 0.377202), abs=1e-6)
    assert np.isnan(metric_summary(np.array([0.5]))[1])


def test_evaluation_popularity_baseline_on_three_customers(engine):
    # training (up to 2024-06-20): A in 4 baskets, B in 3, C in 2, D in 1 -> best-sellers A, B
    train = [("t1", "o1", "2024-06-01", ["A", "B", "C"]), ("t2", "o2", "2024-06-02", ["A", "B", "C"]),
             ("t3", "o3", "2024-06-03", ["A", "B"]), ("t4", "o4", "2024-06-04", ["A", "D"])]
    # test window (2024-06-21 .. 06-30): t1 buys B, t2 buys D, t3 buys A and C; t9 is a new (cold) customer
    test = [("t1", "o5", "2024-06-25", ["B"]), ("t2", "o6", "2024-06-26", ["D"]),
            ("t3", "o7", "2024-06-27", ["A", "C"]), ("t9", "o8", "2024-06-28", ["A", "Z"])]
    lines = lines_in(engine, make_lines(train + test))
    settings = RecommendSettings(k=2, horizon_days=10, min_product_baskets=1, min_pair_baskets=1)
    table = evaluate_recommendations(lines, AS_OF, settings).set_index(["method", "list"])
    popular = table.loc[("popularity", "next_basket")]
    # popularity lists [A, B] for everyone: t1 hits at rank 2 (1 relevant), t2 none, t3 at rank 1 (2 relevant)
    g2 = 1 / np.log2(3)
    assert popular["customers"] == 3
    assert popular["ndcg"] == pytest.approx((g2 + 0 + 1 / (1 + g2)) / 3)
    assert popular["precision"] == pytest.approx((1 / 2 + 0 + 1 / 2) / 3)
    assert popular["recall"] == pytest.approx((1 + 0 + 1 / 2) / 3)
    assert popular["hit_rate"] == pytest.approx(2 / 3)
    assert popular["cold_customers"] == 1 and popular["unseen_products"] == 1  # t9, and product Z
    assert popular["coverage"] == pytest.approx(2 / 4)
    assert set(table.index) == {("next_basket", "next_basket"), ("buy_again", "next_basket"),
                                ("popularity", "next_basket"), ("cross_sell", "cross_sell"),
                                ("popularity", "cross_sell")}
    # cross-sell is scored on first-time purchases only: t2's D (t2 had A, B, C) and t3's C? t3 had A, B: C is new
    assert table.loc[("cross_sell", "cross_sell"), "customers"] == 2
    assert not table.loc[("popularity", "next_basket"), "no_better_than_popularity"]


def test_no_better_than_popularity_flag_follows_interval_overlap(engine):
    from crmlib.segmentation.recommend import EVALUATION_COLUMNS, flag_no_better_than_popularity

    base = {c: 0 for c in EVALUATION_COLUMNS}
    rows = [dict(base, method="popularity", list="cross_sell", ndcg_low=0.10, ndcg_high=0.20),
            dict(base, method="cross_sell", list="cross_sell", ndcg_low=0.19, ndcg_high=0.30),
            dict(base, method="popularity", list="next_basket", ndcg_low=0.10, ndcg_high=0.20),
            dict(base, method="next_basket", list="next_basket", ndcg_low=0.21, ndcg_high=0.30)]
    flagged = flag_no_better_than_popularity(pd.DataFrame(rows)).set_index(["method", "list"])
    assert flagged.loc[("cross_sell", "cross_sell"), "no_better_than_popularity"]
    assert not flagged.loc[("next_basket", "next_basket"), "no_better_than_popularity"]


# -- co-occurrence ---------------------------------------------------------------------------------
def random_baskets(seed: int, n_baskets: int = 300, n_products: int = 25):
    rng = np.random.default_rng(seed)
    baskets, matrix = [], np.zeros((n_baskets, n_products), dtype=np.int64)
    for b in range(n_baskets):
        size = 1 + rng.poisson(2.5)
        items = rng.choice(n_products, size=min(size, n_products), replace=False,
                           p=np.arange(n_products, 0, -1) / np.arange(n_products, 0, -1).sum())
        matrix[b, items] = 1
        baskets.append((f"u{b % 40}", f"b{b}", f"2024-0{1 + b % 6}-0{1 + b % 9}", [f"p{i:02d}" for i in items]))
    return baskets, matrix


def engine_pairs(engine, baskets, **kwargs) -> dict[tuple[str, str], int]:
    lines = lines_in(engine, make_lines(baskets))
    buys = purchase_lines(lines, end=AS_OF)
    items = buys.select("customer_key", "order_id", "product_id").distinct()
    supports = items.group_by("product_id").agg(baskets=items.count())
    pairs = co_occurrence(buys, supports, **kwargs).to_pandas()
    return {(r.product_id, r.other_product_id): int(r.baskets) for r in pairs.itertuples()}


def scipy_pairs(matrix: np.ndarray, minimum: int = 1) -> dict[tuple[str, str], int]:
    x = sp.csr_matrix(matrix)
    gram = (x.T @ x).tocoo()
    return {(f"p{i:02d}", f"p{j:02d}"): int(v) for i, j, v in zip(gram.row, gram.col, gram.data)
            if i != j and v >= minimum}


def test_engine_co_occurrence_equals_scipy_gram_matrix(engine):
    baskets, matrix = random_baskets(1)
    ours = engine_pairs(engine, baskets, max_basket_size=None)
    assert len(ours) > 100
    assert ours == scipy_pairs(matrix)
    assert engine_pairs(engine, baskets, max_basket_size=None, min_pair_baskets=5) == scipy_pairs(matrix, 5)


def test_basket_cap_keeps_the_best_selling_products_of_large_baskets(engine):
    baskets, matrix = random_baskets(2)
    support = matrix.sum(axis=0)
    cap = 3
    capped = matrix.copy()
    for b in range(capped.shape[0]):
        items = np.flatnonzero(capped[b])
        # best-sellers first, ties by product id (the id order is the column order here)
        keep = sorted(items, key=lambda i: (-support[i], i))[:cap]
        capped[b] = 0
        capped[b, keep] = 1
    assert (matrix.sum(axis=1) > cap).any()
    assert engine_pairs(engine, baskets, max_basket_size=cap) == scipy_pairs(capped)


# -- lists -----------------------------------------------------------------------------------------
def fitted(engine, segments=None, **settings) -> ProductRecommender:
    lines = lines_in(engine, make_lines(shop_baskets(), refunds=[("c3", "r1", "2024-06-01", "Z")]))
    options = dict(k=5, min_product_baskets=1, min_pair_baskets=2, neighbours=5)
    options.update(settings)
    return ProductRecommender(**options).fit(lines, AS_OF, segments=segments)


def test_fit_returns_self_with_a_readable_repr(engine):
    rec = ProductRecommender(k=5, min_product_baskets=1, min_pair_baskets=2, neighbours=5)
    assert "not fitted" in repr(rec) and "k=5" in repr(rec)
    assert rec.fit(lines_in(engine, make_lines(shop_baskets())), AS_OF) is rec
    assert f"fitted up to {AS_OF}" in repr(rec) and "12 customers" in repr(rec)
    with pytest.raises(ValueError):
        ProductRecommender(k=0)


def test_refund_only_products_are_never_bought_nor_recommended(engine):
    rec = fitted(engine)
    assert "Z" not in set(rec.products_["product_id"])
    lists = rec.recommendations("next_basket").to_pandas()
    assert "Z" not in set(lists["product_id"])


def test_lines_of_a_refund_order_do_not_count_as_bought(engine):
    frame = make_lines([("c1", "o1", "2024-06-01", ["A", "B"]), ("c1", "o2", "2024-06-02", ["Y"])])
    frame["refund"] = frame["order_id"].eq("o2")  # ingest's flag; the line keeps its positive amount
    buys = purchase_lines(lines_in(engine, frame), end=AS_OF).to_pandas()
    assert sorted(buys["product_id"]) == ["A", "B"]


def test_lists_are_filled_to_k_and_cross_sell_skips_bought_products(engine):
    rec = fitted(engine)
    bought = make_lines(shop_baskets()).groupby("customer_key")["product_id"].agg(set)
    for name in ("next_basket", "cross_sell"):
        table = rec.recommendations(name).to_pandas()
        assert table.groupby("customer_key").size().eq(5).all(), name
        assert table.groupby("customer_key")["rank"].apply(list).map(lambda r: r == [1, 2, 3, 4, 5]).all()
        assert table.groupby("customer_key")["product_id"].nunique().eq(5).all()
        assert set(table["reason"]) <= set(REASONS)
        assert table["reason"].notna().all()
        if name == "cross_sell":
            assert not any(p in bought[c] for c, p in zip(table["customer_key"], table["product_id"]))


def test_staple_is_first_in_next_basket_with_its_cycle_as_reason(engine):
    rec = fitted(engine)
    table = rec.recommendations("next_basket").to_pandas()
    first = table[(table["customer_key"] == "c1") & (table["rank"] == 1)].iloc[0]
    # c1 bought C on 4 days, 30 days apart, the last on 2024-06-01: due again within the next 30 days
    assert first["product_id"] == "C"
    assert first["reason"] == REASON_REPEAT
    assert (first["reason_n"], first["reason_days"]) == (4, 30)
    assert reason_text(first["reason"], n=first["reason_n"], days=first["reason_days"]) == \
        "bought 4 times, usually every 30 days"


def test_often_bought_with_names_a_product_of_the_customers_history(engine):
    rec = fitted(engine)
    table = rec.recommendations("cross_sell").to_pandas()
    history = make_lines(shop_baskets()).groupby("customer_key")["product_id"].agg(set)
    linked = table[table["reason"] == REASON_WITH]
    assert len(linked) > 0
    assert all(p in history[c] for c, p in zip(linked["customer_key"], linked["reason_product_id"]))
    # A and B sell together: a customer who had A only (c1) is offered B because of A
    row = table[(table["customer_key"] == "c1") & (table["product_id"] == "B")].iloc[0]
    assert row["reason_product_id"] == "A"
    assert reason_text(row["reason"], product="name of A") == "often bought with name of A"


def test_business_filters_apply_before_the_cut_and_lists_stay_full(engine):
    rec = fitted(engine, exclude_products=["B"], exclude_categories=["toys"])
    for name in ("next_basket", "cross_sell"):
        table = rec.recommendations(name).to_pandas()
        assert not set(table["product_id"]) & {"B", "H", "I", "J", "K", "L"}
        # 6 allowed products (A, C, D, E, F, G): a list never runs past k = 5 and a cross-sell list holds
        # only the allowed products the customer never bought (c1 bought all but D)
        assert table.groupby("customer_key").size().max() == 5
        if name == "cross_sell":
            assert table.loc[table["customer_key"] == "c1", "product_id"].tolist() == ["D"]
    assert not set(rec.also_bought_["other_product_id"]) & {"B", "H", "I", "J", "K", "L"}
    nb = rec.recommendations("next_basket").to_pandas()
    assert nb.groupby("customer_key").size().eq(5).all()


def test_segment_fallback_uses_the_customers_segment(engine):
    segments = pd.DataFrame({"customer_key": [f"c{i}" for i in range(1, 13)],
                             "segment": ["Champions"] * 6 + ["At Risk"] * 6})
    rec = fitted(engine, segments=segments, k=6)
    table = rec.recommendations("cross_sell").to_pandas()
    fallback = table[table["reason"] == REASON_SEGMENT]
    assert len(fallback) > 0
    expected = dict(zip(segments["customer_key"], segments["segment"]))
    assert (fallback["reason_segment"] == fallback["customer_key"].map(expected)).all()
    assert set(table.loc[table["reason"] == REASON_POPULAR, "reason_segment"].dropna()) == set()


def test_also_bought_support_confidence_and_lift(engine):
    rec = fitted(engine)
    ab = rec.also_bought_.set_index(["product_id", "other_product_id"])
    n_baskets = rec.n_baskets_
    # A is in 9 baskets (8 with B, 1 with E/F/G), B in 8: all 8 B baskets hold A
    row = ab.loc[("A", "B")]
    assert row["baskets"] == 8
    assert row["support"] == pytest.approx(8 / n_baskets)
    assert row["confidence"] == pytest.approx(8 / 9)
    assert row["lift"] == pytest.approx(8 * n_baskets / (9 * 8))
    assert ab.loc[("B", "A"), "confidence"] == pytest.approx(1.0)
    # pairs seen in one basket only (A with E, F, G) are below the minimum support of 2
    assert ("A", "E") not in ab.index
    assert (rec.also_bought_.groupby("product_id")["rank"].min() == 1).all()


def test_repurchase_score_rises_when_due_and_fades_when_lapsed():
    n = np.array([4, 4, 4, 4, 1])
    since = np.array([5, 28, 150, 300, 28])
    scores = repurchase_score(n, since, np.full(5, 30), horizon_days=30)
    just_bought, due, lapsed, long_gone, once = scores
    assert due > just_bought and due > lapsed > long_gone and due > once
    # the habit alone keeps half the score: a favourite bought last week is not buried
    assert just_bought >= 0.5 * np.log1p(4)
    assert long_gone < 0.5 * just_bought


def test_no_purchase_up_to_as_of_cannot_be_computed(engine):
    lines = lines_in(engine, make_lines([("c1", "o1", "2025-01-01", ["A"])]))
    with pytest.raises(CannotCompute, match="no product was bought"):
        ProductRecommender().fit(lines, AS_OF)


def test_recommendation_tables_writes_the_three_tables(engine):
    lines = lines_in(engine, make_lines(shop_baskets()))
    result = recommendation_tables(engine, AS_OF, RecommendSettings(k=3, min_product_baskets=1,
                                                                    min_pair_baskets=2, horizon_days=60),
                                   lines=lines)
    recs = engine.to_pandas(engine.table("recommendations"))
    assert set(recs["list"]) == {"next_basket", "cross_sell"}
    assert len(recs) == result.rows["recommendations"] == 12 * 3 * 2
    assert engine.has_table("also_bought") and engine.has_table("rec_evaluation")
    evaluation = engine.to_pandas(engine.table("rec_evaluation"))
    assert {"ndcg", "ndcg_low", "ndcg_high", "coverage", "no_better_than_popularity"} <= set(evaluation.columns)


# -- the stage step, audiences and views -----------------------------------------------------------
def test_run_recommendations_without_order_lines_says_so_and_writes_nothing(engine):
    from crmlib.segmentation.recommend import recommendations_summary, run_recommendations

    engine.write_table("recommendations", pd.DataFrame({"x": [1]}))  # stale, from a copied run
    assert run_recommendations(engine, RecommendSettings(), as_of=AS_OF, stage="segmentation") is None
    assert not engine.has_table("recommendations")
    assert "no order lines" in recommendations_summary(None).data


def test_audience_files_respect_consent_and_carry_ranked_products(engine):
    from crmlib.segmentation.recommend import run_recommendations

    lines_in(engine, make_lines(shop_baskets()))
    settings = RecommendSettings(k=3, min_product_baskets=1, min_pair_baskets=2, horizon_days=60)
    consent = pd.DataFrame({"customer_key": ["c1", "c2", "c3"], "consent_marketing": [False, True, None]})
    result = run_recommendations(engine, settings, as_of=AS_OF, stage="segmentation", consent=consent)
    summary = result.audiences.set_index("value")
    buy_again = pd.read_parquet(engine.run_dir / summary.loc["next_basket", "path"])
    # c1's staple C is due: c1 would be on the buy-again list but declined marketing
    assert summary.loc["next_basket", "excluded_no_consent"] == 1
    assert "c1" not in set(buy_again["customer_key"])
    assert summary.loc["next_basket", "written"] == len(buy_again) == summary.loc["next_basket", "customers"] - 1
    assert list(buy_again.columns) == ["customer_key", "product_1", "product_2", "product_3"]
    csv = (engine.run_dir / summary.loc["cross_sell", "path"]).with_suffix(".csv")
    assert csv.exists() and "c1" not in csv.read_text(encoding="utf-8-sig")
    # the page's example lists never say whose they are
    assert "customer_key" not in result.examples.columns


def test_report_views_show_names_and_reasons_never_customer_keys(engine):
    from crmlib.segmentation import recommend as rec_module

    lines_in(engine, make_lines(shop_baskets()))
    settings = RecommendSettings(k=3, min_product_baskets=1, min_pair_baskets=2, horizon_days=60)
    result = rec_module.run_recommendations(engine, settings, as_of=AS_OF, stage="segmentation")
    pages = [rec_module.recommendations_summary(result).data]
    for view in (rec_module.also_bought_view, rec_module.top_products_view, rec_module.example_list_view,
                 rec_module.audiences_view):
        pages.append(view(result)._repr_html_())
    html = "\n".join(pages)
    assert "name of A" in html and "often bought with" in html
    assert rec_module.method_note(result).startswith("- **product recommendations**")
    assert rec_module.method_note(None) == ""
    assert not any(f">c{i}<" in html for i in range(1, 13))


def test_reasons_and_list_names_read_in_chinese_on_a_zh_page():
    from crmlib.segmentation.recommend import LISTS, METHODS

    set_language("zh-CN")
    try:
        texts = [reason_text(REASON_REPEAT, n=4, days=30), reason_text(REASON_WITH, product="牛奶"),
                 reason_text(REASON_POPULAR)] + [_zh(v) for v in list(LISTS.values()) + list(METHODS.values())]
    finally:
        set_language("en")
    assert texts[0] == "已购买 4 次，通常每 30 天买一次"
    assert texts[1] == "常与牛奶一起购买"
    # only the acronyms and data names may stay in Latin letters
    for text in texts:
        assert not any(word.isascii() and word.isalpha() and len(word) > 2 for word in
                       text.replace("（", " ").replace("）", " ").replace("/", " ").split()), text


def _zh(message: str) -> str:
    from crmlib.i18n import _

    return _(message)


def test_evaluation_scores_a_sample_when_there_are_many_customers(engine):
    baskets, _matrix = random_baskets(3)
    lines = lines_in(engine, make_lines(baskets))
    settings = dict(k=3, min_product_baskets=1, min_pair_baskets=2, horizon_days=60)
    everyone = evaluate_recommendations(lines, AS_OF, RecommendSettings(**settings))
    assert everyone["customers"].max() > 10
    sampled = evaluate_recommendations(lines, AS_OF, RecommendSettings(**settings, evaluation_customers=10))
    assert sampled.loc[sampled["list"] == "next_basket", "customers"].eq(10).all()
    assert (sampled["test_customers"] == everyone["test_customers"]).all()


def test_fit_applies_the_basket_cap_only_to_larger_baskets(engine):
    # the (A, B, H) baskets hold 3 products: a cap of 2 keeps the best-sellers A and B, so H loses its pairs
    uncapped = fitted(engine).also_bought_
    capped = fitted(engine, max_basket_size=2).also_bought_
    pairs = set(zip(uncapped["product_id"], uncapped["other_product_id"]))
    assert ("A", "H") in pairs and ("A", "B") in pairs
    capped_pairs = set(zip(capped["product_id"], capped["other_product_id"]))
    assert ("A", "B") in capped_pairs and not any("H" in pair for pair in capped_pairs)


def test_history_scored_a_block_of_entries_at_a_time_gives_the_same_lists(engine, monkeypatch):
    import crmlib.segmentation.recommend as recommend

    def lists(rec):
        table = pd.concat([rec.recommendations(name).to_pandas() for name in ("next_basket", "cross_sell")])
        return table.sort_values(["customer_key", "list", "rank"]).reset_index(drop=True)

    def repeat_scores(rec):
        # by customer key: the engine returns the customers in no fixed order
        entries = rec._repeat.tocoo()
        frame = pd.DataFrame({"customer_key": rec.customers_.to_numpy(zero_copy_only=False)[entries.row],
                              "product": entries.col, "score": entries.data})
        return frame.sort_values(["customer_key", "product"]).reset_index(drop=True)

    whole = fitted(engine, exclude_products=["B"])  # an excluded product's entries score 0 and are pruned
    monkeypatch.setattr(recommend, "_ENTRY_BLOCK", 3)  # the 12 customers' ~40 entries in many blocks
    blocks = fitted(engine, exclude_products=["B"])
    assert whole._times.nnz > 3 * 5
    pd.testing.assert_frame_equal(lists(blocks), lists(whole), check_exact=True)
    pd.testing.assert_frame_equal(repeat_scores(blocks), repeat_scores(whole), check_exact=True)
    np.testing.assert_array_equal(blocks.products_["cycle_days"], whole.products_["cycle_days"])


def test_top_k_equals_a_full_sort_of_each_row():
    from crmlib.segmentation.recommend import _top_k

    rng = np.random.default_rng(4)
    lengths = rng.choice([0, 2, 5, 9, 40, 130], size=300)
    rows = np.repeat(np.arange(300), lengths)
    cols = np.concatenate([rng.choice(500, size=n, replace=False) for n in lengths])
    values = rng.integers(0, 6, size=rows.size) / 5.0 + 0.1  # many ties: broken by the lower column
    matrix = sp.csr_matrix((values, (rows, cols)), shape=(300, 500))
    picked = _top_k(matrix, 5, max_width=64)  # rows of 130 candidates take the whole-sort path
    got = [(int(r), int(matrix.indices[p])) for r, p in
           zip(np.searchsorted(matrix.indptr, picked, side="right") - 1, picked)]
    expected = []
    for r in range(300):
        start, end = matrix.indptr[r], matrix.indptr[r + 1]
        entries = sorted(zip(-matrix.data[start:end], matrix.indices[start:end]))[:5]
        expected += [(r, int(c)) for _v, c in entries]
    assert got == expected


# -- the sample's planted structure ------------------------------------------------------------------
@pytest.fixture(scope="module")
def sample_recommender(tmp_path_factory):
    from crmlib.sample import generate_sample

    folder = tmp_path_factory.mktemp("sample_lines")
    generate_sample(folder, customers=5000, seed=42)
    lines = pd.read_csv(folder / "order_lines.csv", dtype={"order_id": str, "product_id": str})
    orders = pd.read_csv(folder / "eshop_orders.csv", dtype=str).drop_duplicates("order_id")
    frame = lines.merge(orders[["order_id", "account_id", "order_ts"]], on="order_id")
    frame = frame.rename(columns={"account_id": "customer_key"})
    # the file's dirty timestamps ("昨天") are ingest's business; here they are left out
    frame["order_ts"] = pd.to_datetime(frame["order_ts"], errors="coerce", format="%Y-%m-%d %H:%M:%S")
    frame = frame.dropna(subset=["order_ts"])
    with Engine(folder / "run") as eng:
        rec = ProductRecommender().fit(lines_in(eng, frame), frame["order_ts"].max())
    truth = pd.read_parquet(folder / "truth" / "products.parquet")
    pairs = pd.read_parquet(folder / "truth" / "bought_together.parquet")
    return rec, truth, pairs


def test_lists_do_not_depend_on_how_many_customers_are_scored_at_a_time(sample_recommender, monkeypatch):
    import crmlib.segmentation.recommend as recommend

    rec = sample_recommender[0]
    whole = all_lists(rec)
    assert rec.n_customers_ > 1000 and rec.n_customers_ <= recommend._CHUNK  # one chunk by default
    monkeypatch.setattr(recommend, "_CHUNK", 7)  # hundreds of chunks of 7 customers
    pd.testing.assert_frame_equal(all_lists(rec), whole, check_exact=True)


def test_planted_bought_together_pairs_are_each_others_first_partner(sample_recommender):
    rec, _truth, pairs = sample_recommender
    first = rec.also_bought_[rec.also_bought_["rank"] == 1].set_index("product_id")["other_product_id"]
    assert len(pairs) >= 5
    for a, b in zip(pairs["product_id"], pairs["other_product_id"]):
        assert first[a] == b and first[b] == a


def test_planted_repurchase_cycles_are_recovered(sample_recommender):
    rec, truth, _pairs = sample_recommender
    merged = truth.merge(rec.products_[["product_id", "cycle_days"]], on="product_id")
    # products that at least 10 customers buy on their cycle; a carrier buys in the first order after each
    # cycle, so the gaps run a little longer than the cycle itself
    carried = merged[merged["repurchase_days"].notna() & (merged["cycle_carriers"] >= 10)]
    ratio = carried["cycle_days"] / carried["repurchase_days"]
    assert len(carried) >= 8
    assert 1.0 <= ratio.median() <= 1.35
    assert (ratio.between(0.9, 1.6)).mean() >= 0.8


def test_consent_comes_from_the_runs_customers_table_by_default(engine):
    from crmlib.segmentation.recommend import run_recommendations

    lines_in(engine, make_lines(shop_baskets()))
    engine.write_table("customers", pd.DataFrame({"customer_key": ["c1"], "consent_marketing": [False]}))
    settings = RecommendSettings(k=3, min_product_baskets=1, min_pair_baskets=2, horizon_days=60)
    result = run_recommendations(engine, settings, as_of=AS_OF, stage="segmentation")
    assert result.audiences.set_index("value").loc["next_basket", "excluded_no_consent"] == 1


def test_key_finding_names_the_buy_again_audience_from_the_run_files(engine):
    from crmlib.segmentation.recommend import recommendation_findings, run_recommendations

    assert recommendation_findings(engine.run_dir) == []
    lines_in(engine, make_lines(shop_baskets()))
    settings = RecommendSettings(k=3, min_product_baskets=1, min_pair_baskets=2, horizon_days=60)
    result = run_recommendations(engine, settings, as_of=AS_OF, stage="segmentation")
    due = int(result.audiences.set_index("value").loc["next_basket", "written"])
    (finding,) = recommendation_findings(engine.run_dir)
    assert finding.startswith(f"{due} customers have a regular product due now")


# -- the stage call ------------------------------------------------------------------------------------
def test_stage_call_reads_its_params_section_and_writes_the_contract_tables(engine):
    from crmlib.params import complete_params
    from crmlib.segmentation.stage import recommendations_stage

    params = complete_params({"run": {"as_of": AS_OF}, "segmentation": {"recommend": {
        "k": 4, "min_product_baskets": 1, "min_pair_baskets": 2, "horizon_days": 60,
        "exclude_categories": ["toys"]}}})
    frame = make_lines(shop_baskets())
    engine.write_table("orders", frame.groupby(["customer_key", "order_id"], as_index=False)
                       .agg(order_ts=("order_ts", "first"), amount=("amount", "sum")))
    assert recommendations_stage(engine, params) is None  # no order lines yet: nothing, and no error
    lines_in(engine, frame)
    result = recommendations_stage(engine, params)
    recs = engine.to_pandas(engine.table("recommendations"))
    assert list(recs.columns) == ["customer_key", "list", "rank", "product_id", "score", "reason", "reason_n",
                                  "reason_days", "reason_product_id", "reason_segment"]
    assert recs["rank"].max() == 4 and not set(recs["product_id"]) & {"H", "I", "J", "K", "L"}
    also = engine.to_pandas(engine.table("also_bought"))
    assert list(also.columns) == ["product_id", "other_product_id", "rank", "baskets", "support", "confidence",
                                  "lift", "cosine"]
    assert engine.has_table("rec_evaluation") and result.settings.k == 4
    # the cross-sell fallback knows each customer's RFM segment, which the stage computed from the orders
    assert result.recommender.segment_names_


# -- one set of queries for the holdout's fit and the final one; the faster paths of the lists -------------
def all_lists(rec) -> pd.DataFrame:
    table = pd.concat([rec.recommendations(name).to_pandas() for name in ("next_basket", "cross_sell")])
    return table.sort_values(["customer_key", "list", "rank"]).reset_index(drop=True)


def repeat_by_key(rec) -> pd.DataFrame:
    entries = rec._repeat.tocoo()
    frame = pd.DataFrame({"customer_key": rec.customers_.to_numpy(zero_copy_only=False)[entries.row],
                          "product": rec.products_["product_id"].to_numpy()[entries.col], "score": entries.data})
    return frame.sort_values(["customer_key", "product"]).reset_index(drop=True)


def assert_same_fit(shared, alone):
    assert (shared.as_of_, shared.n_baskets_, shared.largest_basket_, shared.n_customers_) == \
        (alone.as_of_, alone.n_baskets_, alone.largest_basket_, alone.n_customers_)
    pd.testing.assert_frame_equal(shared.products_, alone.products_, check_exact=True)
    pd.testing.assert_frame_equal(shared.also_bought_, alone.also_bought_, check_exact=True)
    pd.testing.assert_frame_equal(repeat_by_key(shared), repeat_by_key(alone), check_exact=True)
    pd.testing.assert_frame_equal(all_lists(shared), all_lists(alone), check_exact=True)


@pytest.mark.parametrize("cap", ["none", "last date only", "both dates"])
def test_fits_from_shared_queries_equal_fits_of_their_own(engine, cap):
    from crmlib.segmentation.recommend import _FitQueries

    baskets, _matrix = random_baskets(5)
    cutoff = dt.date(2024, 4, 5)
    before = max(len(items) for _c, _o, day, items in baskets if dt.date.fromisoformat(day) <= cutoff)
    # a bulk order after the cutoff: only the last date's baskets can be over a cap set at the earlier maximum
    baskets.append(("u3", "bulk", "2024-06-02", [f"p{i:02d}" for i in range(before + 3)]))
    options = dict(k=4, min_product_baskets=2, min_pair_baskets=2, neighbours=6,
                   max_basket_size={"none": 40, "last date only": before, "both dates": 3}[cap])
    lines = lines_in(engine, make_lines(baskets))
    segments = pd.DataFrame({"customer_key": [f"u{i}" for i in range(40)],
                             "segment": ["loyal" if i % 3 else "new" for i in range(40)]})
    queries = _FitQueries(ProductRecommender(**options), lines, [cutoff, AS_OF])
    capped = [largest > options["max_basket_size"] for largest in queries.largest]
    assert capped == {"none": [False, False], "last date only": [False, True], "both dates": [True, True]}[cap]
    for i, end in enumerate([cutoff, AS_OF]):
        shared = queries.fit(ProductRecommender(**options), i, segments=segments)
        alone = ProductRecommender(**options).fit(lines, end, segments=segments)
        assert_same_fit(shared, alone)
    assert len(queries.customers) == 40  # the last date's customers: everyone


def test_evaluation_from_the_shared_fit_equals_the_evaluation_alone(engine):
    baskets, _matrix = random_baskets(6)
    lines = lines_in(engine, make_lines(baskets))
    settings = RecommendSettings(k=3, min_product_baskets=1, min_pair_baskets=2, horizon_days=60)
    result = recommendation_tables(engine, AS_OF, settings, lines=lines)
    alone = evaluate_recommendations(lines, AS_OF, settings)
    # the same customers, summed in another order: equal to rounding
    pd.testing.assert_frame_equal(result.evaluation, alone, check_exact=False, rtol=1e-12)
    assert_same_fit(result.recommender, ProductRecommender.from_settings(settings).fit(lines, AS_OF))


def test_no_purchase_before_the_cutoff_leaves_the_lists_and_says_why(engine):
    baskets = [(f"c{i}", f"o{i}", "2024-06-20", ["A", "B"]) for i in range(4)]
    lines = lines_in(engine, make_lines(baskets))
    result = recommendation_tables(engine, AS_OF, RecommendSettings(k=2, min_product_baskets=1), lines=lines)
    assert isinstance(result.evaluation, CannotCompute)
    assert "learns from purchases up to 2024-05-31" in str(result.evaluation)
    # everyone bought both products: buy-again lists of two, and nothing left to cross-sell
    assert not engine.has_table("rec_evaluation") and result.rows["recommendations"] == 4 * 2


@pytest.mark.parametrize("seed", [4, 9])
def test_top_k_laid_out_in_full_equals_the_padded_blocks(seed):
    from crmlib.segmentation.recommend import _top_k

    rng = np.random.default_rng(seed)
    lengths = rng.choice([0, 1, 3, 5, 8, 30], size=400)
    rows = np.repeat(np.arange(400), lengths)
    cols = np.concatenate([rng.choice(60, size=n, replace=False) for n in lengths])
    values = rng.integers(0, 4, size=rows.size) / 3.0 - 0.5  # ties, and values below zero
    matrix = sp.csr_matrix((values, (rows, cols)), shape=(400, 60))
    padded = _top_k(matrix, 5, dense_width=0)
    for batch in (60 * 7, 1 << 22):  # several blocks of rows, and one
        np.testing.assert_array_equal(_top_k(matrix, 5, batch=batch, dense_width=60), padded)


def test_strongest_link_laid_out_in_full_equals_the_sparse_lookup(engine, monkeypatch):
    import crmlib.segmentation.recommend as recommend

    baskets, _matrix = random_baskets(7)
    lines = lines_in(engine, make_lines(baskets))
    options = dict(k=5, min_product_baskets=1, min_pair_baskets=1, neighbours=8)
    dense = all_lists(ProductRecommender(**options).fit(lines, AS_OF))
    assert (dense["reason"] == REASON_WITH).sum() > 50 and dense["reason_product_id"].notna().sum() > 50
    monkeypatch.setattr(recommend, "_DENSE_NEIGHBOURS", 0)
    pd.testing.assert_frame_equal(all_lists(ProductRecommender(**options).fit(lines, AS_OF)), dense, check_exact=True)


def test_example_lists_chosen_while_writing_equal_the_engines_choice(engine):
    from crmlib.segmentation.recommend import _list_overview

    baskets, _matrix = random_baskets(8)
    lines = lines_in(engine, make_lines(baskets))
    result = recommendation_tables(engine, AS_OF, RecommendSettings(k=4, min_product_baskets=1, min_pair_baskets=1),
                                   lines=lines)
    recs = engine.table("recommendations")
    assert set(result.example_keys) == {"next_basket", "cross_sell"}
    _top, examples = _list_overview(recs, result.example_keys)
    pd.testing.assert_frame_equal(examples, _examples_chosen_by_the_engine(recs), check_exact=True)
    assert len(examples) == 8


def _examples_chosen_by_the_engine(recs):
    """The example rule as one engine query per list: as many of the customer's own regular products (buy
    again) or as many different "bought with" products (cross-sell) as any list has, then the most kinds of
    reason, then the smallest customer key."""
    import functools
    import operator

    import ibis

    from crmlib.segmentation.recommend import LISTS, REASON_REPEAT, REASONS

    examples = []
    for list_name in LISTS:
        rows = recs.filter(recs.list == list_name)
        signal = ((rows.reason == REASON_REPEAT).sum() if list_name == "next_basket"
                  else rows.reason_product_id.nunique())
        mixed = functools.reduce(operator.add, [(rows.reason == r).any().cast("int64") for r in REASONS])
        best = rows.group_by("customer_key").agg(signal=signal, mixed=mixed)
        best = best.order_by([ibis.desc("signal"), ibis.desc("mixed"), "customer_key"]).limit(1).to_pandas()
        chosen = rows.filter(rows.customer_key.isin(best["customer_key"].tolist()))
        examples.append(chosen.order_by("rank").to_pandas().drop(columns="customer_key"))
    return pd.concat(examples, ignore_index=True)


def test_wide_audience_lists_equal_a_pandas_pivot():
    import pyarrow as pa

    from crmlib.segmentation.recommend import _wide_lists

    part = pa.table({"customer_key": ["k2", "k1", "k2"], "rank": [2, 1, 1], "product_id": ["x", "y", "z"]})
    rest = pa.table({"customer_key": ["k1", "k3"], "rank": [3, 1], "product_id": ["v", "w"]})
    long = pa.concat_tables([part, rest])  # two chunks; k1 has no rank 2, nobody has rank 4
    expected = long.to_pandas().pivot(index="customer_key", columns="rank", values="product_id")
    expected.columns = [f"product_{int(r)}" for r in expected.columns]
    pd.testing.assert_frame_equal(_wide_lists(long), expected.reset_index(), check_exact=True)
