"""Order lines of the sample, measured from the written files (the generator's constants are not used)."""

from __future__ import annotations


import pandas as pd
import pytest
from scipy import stats


AS_OF_END = pd.Timestamp("2026-07-01")


@pytest.fixture(scope="module")
def files(sample):
    lines = pd.read_csv(sample / "order_lines.csv", dtype={"order_id": str, "product_id": str},
                        encoding="utf-8")
    orders = pd.read_csv(sample / "eshop_orders.csv", dtype=str, keep_default_na=False, na_values=[""])
    truth = pd.read_parquet(sample / "truth/orders.parquet")
    truth = truth[truth.source == "eshop_orders"].reset_index(drop=True)
    orders["true_amount"] = truth.true_amount.to_numpy()
    orders["is_real_order"] = truth.is_real_order.to_numpy()
    orders["dirty"] = truth.dirty.to_numpy()
    products = pd.read_parquet(sample / "truth/products.parquet")
    pairs = pd.read_parquet(sample / "truth/bought_together.parquet")
    return lines, orders, products, pairs


def test_columns_and_one_set_of_lines_per_order_id(files):
    lines, orders, _, _ = files
    assert list(lines.columns) == ["order_id", "product_id", "quantity", "amount", "product_name",
                                   "category", "brand"]
    assert set(lines.order_id) == set(orders.order_id)
    assert not lines.duplicated(["order_id", "product_id"]).any()


def test_line_amounts_sum_to_each_order_amount_to_the_cent(files):
    lines, orders, _, _ = files
    cents = (lines.amount * 100).round().astype("int64")
    per_order = cents.groupby(lines.order_id).sum()
    real = orders[orders.is_real_order].set_index("order_id")
    assert real.index.is_unique
    true_cents = (real.true_amount * 100).round().astype("int64")
    assert (per_order.reindex(real.index) == true_cents).all()
    readable = real[real.dirty.ne("bad_amount")]
    file_cents = (pd.to_numeric(readable.amount) * 100).round().astype("int64")
    assert (per_order.reindex(readable.index) == file_cents).all()
    assert (cents != 0).all()


def test_quantities_match_items_and_refunds_return_what_was_bought(files):
    lines, orders, _, _ = files
    real = orders[orders.is_real_order].set_index("order_id")
    qty = lines.groupby("order_id").quantity.sum()
    sales = real[real.status == "completed"]
    assert (qty.reindex(sales.index) == sales["items"].astype(int)).all()
    is_refund = lines.order_id.str.endswith("-R")
    assert is_refund.any()
    assert (lines.quantity[is_refund] < 0).all() and (lines.amount[is_refund] < 0).all()
    assert (lines.quantity[~is_refund] > 0).all() and (lines.amount[~is_refund] > 0).all()
    refunded = lines[is_refund].assign(sale_id=lambda f: f.order_id.str[:-2])
    bought = lines[~is_refund].set_index(["order_id", "product_id"]).quantity
    back = bought.reindex(pd.MultiIndex.from_frame(refunded[["sale_id", "product_id"]]))
    assert back.notna().all(), "a refund returned a product its sale did not hold"
    assert (-refunded.quantity.to_numpy() <= back.to_numpy()).all()


def test_catalogue_is_chinese_with_a_long_tail(files):
    lines, _, products, _ = files
    assert 150 <= len(products) <= 300
    assert 8 <= products.category.nunique() <= 12 and 3 <= products.brand.nunique() <= 10
    assert products.product_name.str.contains(r"[\u4e00-\u9fff]").all()
    units = lines[lines.quantity > 0].groupby("product_id").quantity.sum().sort_values(ascending=False)
    assert set(units.index) <= set(products.product_id)
    tenth = len(units) // 10
    assert units.head(tenth).sum() / units.sum() > 0.3  # a head ...
    assert units.head(1).sum() / units.sum() < 0.1  # ... that no single product dominates
    assert units.tail(len(units) // 2).sum() / units.sum() < 0.25  # and a long tail


def _basket_pairs(lines: pd.DataFrame) -> pd.DataFrame:
    sale = lines[lines.quantity > 0][["order_id", "product_id"]]
    n_orders = sale.order_id.nunique()
    both = sale.merge(sale, on="order_id")
    both = both[both.product_id_x < both.product_id_y]
    co = both.groupby(["product_id_x", "product_id_y"]).size().rename("support").reset_index()
    per_product = sale.groupby("product_id").order_id.nunique()
    co["lift"] = (co.support * n_orders / (per_product.reindex(co.product_id_x).to_numpy()
                                           * per_product.reindex(co.product_id_y).to_numpy()))
    return co


def test_planted_pairs_are_the_strongest_bought_together_pairs(files):
    lines, _, _, pairs = files
    co = _basket_pairs(lines)
    planted = {tuple(sorted(p)) for p in zip(pairs.product_id, pairs.other_product_id)}
    assert len(planted) >= 5
    top = co[co.support >= 30].nlargest(len(planted), "lift")
    assert set(zip(top.product_id_x, top.product_id_y)) == planted
    others = co[(co.support >= 30) & ~pd.Series(list(zip(co.product_id_x, co.product_id_y)),
                                                 index=co.index).isin(planted)]
    assert top.lift.min() > 2 * others.lift.max()


def test_repurchase_cycles_show_in_the_gaps_between_purchases(files):
    lines, orders, products, _ = files
    sales = orders[orders.is_real_order & (orders.status == "completed")].copy()
    sales["ts"] = pd.to_datetime(sales.order_ts, format="%Y-%m-%d %H:%M:%S", errors="coerce")
    sales = sales[sales.ts.notna() & (sales.ts < AS_OF_END) & sales.account_id.notna()]
    bought = lines.merge(sales[["order_id", "account_id", "ts"]], on="order_id")
    bought = bought.sort_values(["account_id", "product_id", "ts"])
    bought["gap_days"] = bought.groupby(["account_id", "product_id"]).ts.diff().dt.total_seconds() / 86400
    times = bought.groupby(["account_id", "product_id"]).order_id.transform("size")
    regular = bought[times >= 4].groupby("product_id").agg(
        median_gap=("gap_days", "median"), buyers=("account_id", "nunique"))
    cycles = products.dropna(subset=["repurchase_days"]).set_index("product_id").join(regular, how="inner")
    # a cycle shows where enough customers carry it (truth: cycle_carriers); random repeat purchases
    # of popular products and partners of a pair bought on a cycle blur a few of them
    measured = cycles[(cycles.buyers >= 8) & (cycles.cycle_carriers >= 5)]
    assert len(measured) >= 20
    ratio = measured.median_gap / measured.repurchase_days
    assert ratio.between(0.9, 1.35).mean() >= 0.85, ratio.sort_values().to_dict()
    assert ratio.median() == pytest.approx(1.1, abs=0.1)
    assert stats.spearmanr(measured.repurchase_days, measured.median_gap).statistic > 0.7
    # buyers on a cycle buy at regular gaps; repeat purchases of products without a cycle are random
    spread = bought[times >= 4].groupby(["account_id", "product_id"]).gap_days.agg(
        lambda g: g.std() / g.mean()).rename("cv").reset_index()
    on_cycle = spread.product_id.isin(measured.index)
    without = spread.product_id.isin(products.product_id[products.repurchase_days.isna()])
    assert spread.cv[on_cycle].median() < 0.8 * spread.cv[without].median()
    assert spread.cv[on_cycle].quantile(0.25) < 0.5 < spread.cv[without].quantile(0.25)
