"""Product recommendations from order lines: next basket, cross-sell and "also bought".

Row-level work runs in the engine as Ibis expressions over the ``order_lines`` table (customer_key,
order_id, order_ts, product_id, quantity, amount, product_name, category, brand): the purchases up to
the as-of date, the per-customer product history (orders, first and last day), the product
supports and the basket-level co-occurrence (a self-join of distinct (basket, product) pairs). The
per-customer scoring is sparse algebra in scipy on what the engine returns (history matrix ``A``,
customers x products; neighbour matrix ``S``, products x products): ``A @ S`` in chunks of customers.

Conventions
-----------
* **Bought** means a line with a positive amount (refund lines have negative amounts and are left out),
  a positive quantity when a quantity is given, and not in a refund order (``refund``, when ingest wrote
  it). A basket is one (customer, order).
* **Co-occurrence** counts the baskets that hold both products. Products bought in fewer than
  ``min_product_baskets`` baskets take no part, and a basket larger than ``max_basket_size`` keeps only
  its ``max_basket_size`` best-selling products: the number of pairs grows with the square of the basket
  size, and a few huge baskets (a company's bulk order) would otherwise dominate both the cost and the
  counts. Each product keeps its ``neighbours`` strongest partners by cosine similarity
  ``co / sqrt(baskets_i * baskets_j)``, among pairs seen in at least ``min_pair_baskets`` baskets and
  bought together more often than chance (lift above 1: two best-sellers share baskets by chance alone).
* **also_bought** lists, per product, those neighbours with ``support`` (share of all baskets holding
  both), ``confidence`` (share of the product's baskets that also hold the other one) and ``lift``
  (confidence over the other product's own share of baskets). Lift favours rare products: two products
  bought once, together, have the largest possible lift. That is why a minimum support is required and
  why the list is ranked by cosine similarity, not by lift.
* **next_basket** (already-bought products allowed) blends the customer's own repurchase signal with
  co-occurrence. The repurchase signal (:func:`repurchase_score`) of a product bought in ``n`` orders is
  ``log(1 + n)`` times a timing factor from 0.5 to 1: the probability that the next purchase falls in the
  next ``horizon_days`` given the days since the last one, with Gamma gaps around the customer's own cycle
  (their mean gap; after a single purchase the product's typical cycle: the median of the mean gaps of
  the customers who bought it at least three times, else twice); it fades once more than three cycles
  have passed. The co-occurrence term is ``A @ S`` (``S``: the
  neighbours' confidence ``P(other | product)``) scaled to 0..1 per customer and weighted by
  ``cooc_weight``; with the default 0.1 it mostly fills the slots the customer's own products leave.
* **cross_sell** (never bought by the customer) ranks by ``A @ S'``, with each partner's confidence
  shrunk toward its popularity (:data:`CROSS_SELL_POPULARITY`); slots left over go to the products
  most bought in the customer's RFM segment, then to the best-sellers, so every list has ``k`` products
  when the catalogue has them. Business filters (excluded products and categories) are applied before
  the lists are cut to ``k``.
* **Reasons** are stored as a code plus arguments: ``reason`` holds the English message (one of
  :data:`REASONS`, e.g. ``"bought {n} times, usually every {days} days"``) and ``reason_n``,
  ``reason_days``, ``reason_product_id``, ``reason_segment`` its arguments. A page shows
  :func:`reason_text`, which translates the code and puts the product's *name* in. Tables hold product
  ids only; names are for pages.
* **Ties** are broken by popularity (the catalogue index: best-seller first), then product id, so the
  lists are reproducible.

Evaluation (:func:`evaluate_recommendations`): a temporal holdout. The recommender is fitted on the
purchases up to ``as_of - horizon_days`` and scored on the products each customer bought in the
following ``horizon_days``, against two baselines, popularity (the best-sellers, the same for everyone)
and buy-again (the customer's own most frequent products, ties by recency, filled with best-sellers).
Precision, recall, NDCG, MAP and hit rate at ``k`` carry 95 % intervals ``mean +- 1.96 sd / sqrt(n)``
over customers. Customers with no purchase before the cutoff (cold) and products first sold in the test
window (unseen) cannot be scored by any method and are counted, not hidden. When more than
``evaluation_customers`` customers can be scored, a random sample of that many is (fixed seed), so the
evaluation costs the same on a million customers as on fifty thousand. :func:`recommendation_tables` makes
the holdout's fit and the final one from one set of queries (:class:`_FitQueries`: each query answers for
both dates at once), so the lines are read for the recommender as often as for one fit.
"""

from __future__ import annotations

import datetime as dt
import functools
import operator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from crmlib.i18n import N_, _
from crmlib.status import CannotCompute

__all__ = [
    "ProductRecommender",
    "RecommendSettings",
    "REASONS",
    "METHODS",
    "LISTS",
    "purchase_lines",
    "co_occurrence",
    "ranking_metrics",
    "metric_summary",
    "evaluate_recommendations",
    "temporal_holdout",
    "Holdout",
    "flag_no_better_than_popularity",
    "recommendation_tables",
    "RecommendationTables",
    "reason_text",
    "RECOMMENDATION_COLUMNS",
    "ALSO_BOUGHT_COLUMNS",
    "EVALUATION_COLUMNS",
]

#: The lists a customer gets, as stored in ``recommendations.list`` (shown through :func:`_`).
LISTS = {"next_basket": N_("buy again / next basket"), "cross_sell": N_("cross-sell")}
#: Methods scored by the evaluation (``rec_evaluation.method``) and their labels.
METHODS = {
    "next_basket": N_("next basket (repurchase + co-occurrence)"),
    "cross_sell": N_("cross-sell (co-occurrence, segment fallback)"),
    "buy_again": N_("buy again (baseline)"),
    "popularity": N_("best-sellers (baseline)"),
}

REASON_REPEAT = N_("bought {n} times, usually every {days} days")
REASON_BOUGHT_ONCE = N_("bought once, {days} days ago")
REASON_WITH = N_("often bought with {product}")
REASON_SEGMENT = N_("popular with {segment} customers")
REASON_POPULAR = N_("one of the best-sellers")
#: Every reason code, in the order of their internal numbers.
REASONS = (REASON_REPEAT, REASON_BOUGHT_ONCE, REASON_WITH, REASON_SEGMENT, REASON_POPULAR)
_R_REPEAT, _R_ONCE, _R_WITH, _R_SEGMENT, _R_POPULAR = range(len(REASONS))
#: Reasons that mean "no personal signal: a fallback filled the slot".
FALLBACK_REASONS = (REASON_SEGMENT, REASON_POPULAR)

RECOMMENDATION_COLUMNS = ["customer_key", "list", "rank", "product_id", "score", "reason", "reason_n",
                          "reason_days", "reason_product_id", "reason_segment"]
ALSO_BOUGHT_COLUMNS = ["product_id", "other_product_id", "rank", "baskets", "support", "confidence", "lift",
                       "cosine"]
_METRICS = ("precision", "recall", "ndcg", "map", "hit_rate")
EVALUATION_COLUMNS = (["method", "list", "k", "customers"]
                      + [f"{m}{s}" for m in _METRICS for s in ("", "_low", "_high")]
                      + ["coverage", "fallback_share", "no_better_than_popularity", "cold_customers",
                         "unseen_products", "test_customers", "train_end", "test_end"])

# customers scored at a time: bounds the memory of A @ S and of the fill matrices; at 10,000 (not 50,000) a
# chunk's arrays stay below glibc's 32 MB mmap threshold and reuse freed memory instead of page-faulting
# fresh memory every chunk (1M customers: scoring 22 -> 17 s, 4.5 -> 0.9 s of it in the kernel)
_CHUNK = 10_000
_ENTRY_BLOCK = 1 << 20  # history entries given a repurchase score at a time: bounds its float64 temporaries
_DENSE_NEIGHBOURS = 1 << 22  # neighbour matrices up to this many cells (32 MB) are also laid out in full


@dataclass(frozen=True)
class RecommendSettings:
    """The recommender's settings (``segmentation.recommend`` in the params; see ``docs/PARAMS.md``)."""

    k: int = 10
    neighbours: int = 20
    min_product_baskets: int = 5
    min_pair_baskets: int = 3
    max_basket_size: int = 30
    horizon_days: int = 30
    cooc_weight: float = 0.1
    evaluation_customers: int = 50_000
    exclude_products: tuple[str, ...] = field(default_factory=tuple)
    exclude_categories: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_params(cls, section: dict | None) -> RecommendSettings:
        """Settings from a ``segmentation.recommend`` params section (missing keys take the defaults)."""
        section = dict(section or {})
        known = {k: v for k, v in section.items() if k in cls.__dataclass_fields__}
        for key in ("exclude_products", "exclude_categories"):
            if key in known:
                known[key] = tuple(str(v) for v in (known[key] or ()))
        return cls(**known)


# -- engine side ------------------------------------------------------------------------------------
def _as_date(value: Any) -> dt.date:
    return pd.Timestamp(value).date()


def purchase_lines(lines: Any, *, end: Any, start: Any = None) -> Any:
    """Distinct ``customer_key, order_id, product_id, day`` of the bought lines with ``start < day <= end``.

    A line counts as bought when its amount is positive (refund lines are negative), its quantity, if
    given, is positive and, when ingest wrote the ``refund`` flag, its order is not a refund; lines without
    a customer or a product are left out. Returns an Ibis expression.
    """
    import ibis

    day = lines.order_ts.cast("timestamp").date()
    keep = (lines.amount > 0) & lines.customer_key.notnull() & lines.product_id.notnull()
    if "quantity" in lines.columns:
        keep &= lines.quantity.isnull() | (lines.quantity > 0)
    if "refund" in lines.columns:  # ingest marks the lines of a refund order, whose own amounts may be positive
        keep &= lines.refund.isnull() | ~lines.refund
    keep &= day <= ibis.literal(_as_date(end), type="date")
    if start is not None:
        keep &= day > ibis.literal(_as_date(start), type="date")
    out = lines.filter(keep).select(customer_key=lines.customer_key.cast("string"),
                                    order_id=lines.order_id.cast("string"),
                                    product_id=lines.product_id.cast("string"), day=day)
    return out.distinct()


def co_occurrence(buys: Any, supports: Any, *, min_product_baskets: int = 1, max_basket_size: int | None = None,
                  min_pair_baskets: int = 1) -> Any:
    """Basket co-occurrence counts ``product_id, other_product_id, baskets`` (both orders of each pair).

    Parameters
    ----------
    buys : ibis.Table
        :func:`purchase_lines` (customer_key, order_id, product_id, ...): one row per (basket, product); a
        basket is one (customer, order).
    supports : ibis.Table
        ``product_id, baskets`` per product.
    min_product_baskets : int
        Products in fewer baskets take no part.
    max_basket_size : int, optional
        A larger basket keeps only this many of its products, the best-selling first.
    min_pair_baskets : int
        Pairs seen in fewer baskets are dropped.

    Returns
    -------
    ibis.Table
        Equal to the off-diagonal non-zeros of ``X.T @ X`` for the binary basket x product matrix ``X``.
    """
    import ibis

    items = buys.select("customer_key", "order_id", "product_id")
    kept = supports.filter(supports.baskets >= min_product_baskets).select("product_id", "baskets")
    items = items.join(kept, "product_id")
    if max_basket_size is not None:
        order = ibis.window(group_by=[items.customer_key, items.order_id],
                            order_by=[ibis.desc(items.baskets), items.product_id])
        items = items.mutate(position=ibis.row_number().over(order))
        items = items.filter(items.position < max_basket_size)
    items = items.select("customer_key", "order_id", "product_id")
    other = items.rename(other_product_id="product_id")
    pairs = items.join(other, ["customer_key", "order_id"])
    pairs = pairs.filter(pairs.product_id != pairs.other_product_id)
    counted = pairs.group_by(["product_id", "other_product_id"]).agg(baskets=pairs.count())
    return counted.filter(counted.baskets >= min_pair_baskets)


# -- scoring helpers (numpy / scipy on what the engine returned) ------------------------------------
def _contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``keys`` found in ``sorted_keys`` (ascending; repeats allowed): a binary search, which unlike
    ``np.isin`` neither hashes nor sorts the (large) ``keys``."""
    if sorted_keys.size == 0:
        return np.zeros(np.shape(keys), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.size - 1)
    return sorted_keys[pos] == keys


def _expand_rows(matrix: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each position of ``rows``: (position repeated per stored entry, the entry's index in ``matrix``)."""
    starts = matrix.indptr[rows]
    lengths = matrix.indptr[rows + 1] - starts
    owner = np.repeat(np.arange(rows.size), lengths)
    offsets = np.arange(owner.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return owner, np.repeat(starts, lengths) + offsets


def _sorted_top_k(rows: np.ndarray, cols: np.ndarray, score: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` best entries per row, in rank order: higher score first, then lower column
    (the catalogue index, so the best-seller wins a tie). Sorts every entry: use on few entries."""
    if rows.size == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((cols, -score, rows))
    sorted_rows = rows[order]
    first = np.r_[True, sorted_rows[1:] != sorted_rows[:-1]]
    group_start = np.maximum.accumulate(np.where(first, np.arange(order.size), 0))
    return order[(np.arange(order.size) - group_start) < k]


def _top_k(matrix: sp.csr_matrix, k: int, max_width: int = 1024, batch: int = 1 << 22,
           dense_width: int = 1024) -> np.ndarray:
    """Positions (into ``matrix.data``) of the ``k`` best entries of each row, rows in order and each row's
    entries in rank order (higher value first, then lower column). A row holds each column at most once
    (as scipy's sums and products of matrices give).

    Sorting every candidate of a million customers costs far more than the lists need: each row's k-th
    best value is found first, and only the entries at or above it are sorted. With at most
    ``dense_width`` columns (a catalogue of a few hundred products), it comes from a partial sort of
    consecutive rows laid out in full, ``batch`` cells at a time; otherwise from padded blocks (rows
    grouped by length, each group as wide as its longest row rounded up to a power of two; rows longer
    than ``max_width`` are sorted whole).
    """
    lengths = np.diff(matrix.indptr)
    n_rows = lengths.size
    if n_rows == 0:
        return np.zeros(0, dtype=np.int64)
    owner = np.repeat(np.arange(n_rows), lengths)
    threshold = np.full(n_rows, -np.inf)
    n_cols = matrix.shape[1]
    if n_cols <= dense_width:
        # consecutive rows are one slice of the entries: no per-row gathering, and no row is long
        if n_cols > k:
            step = max(batch // n_cols, 1)
            for first in range(0, n_rows, step):
                last = min(first + step, n_rows)
                part = slice(matrix.indptr[first], matrix.indptr[last])
                block = np.full((last - first, n_cols), -np.inf)
                block[owner[part] - first, matrix.indices[part]] = matrix.data[part]
                block.partition(n_cols - k, axis=1)  # in place: the k largest end up in the last k columns
                threshold[first:last] = block[:, n_cols - k]
        kept = np.flatnonzero(matrix.data >= threshold[owner])
        return kept[_sorted_top_k(owner[kept], matrix.indices[kept], matrix.data[kept], k)]
    width_of = np.maximum(1 << np.ceil(np.log2(np.maximum(lengths, 1))).astype(np.int64), k)
    long_rows = lengths > max_width
    for width in np.unique(width_of[(lengths > k) & ~long_rows]):
        group = np.flatnonzero((width_of == width) & (lengths > k) & ~long_rows)
        step = max(batch // int(width), 1)
        for first in range(0, group.size, step):
            part = group[first:first + step]
            block = np.full((part.size, int(width)), -np.inf)
            owner_local, where = _expand_rows(matrix, part)
            block[owner_local, where - matrix.indptr[part][owner_local]] = matrix.data[where]
            block.partition(int(width) - k, axis=1)  # in place: the k largest end up in the last k columns
            threshold[part] = block[:, int(width) - k]
    candidates = matrix.data >= threshold[owner]
    if long_rows.any():
        heavy = long_rows[owner]
        candidates &= ~heavy
        heavy_pos = np.flatnonzero(heavy)
        keep_heavy = heavy_pos[_sorted_top_k(owner[heavy], matrix.indices[heavy], matrix.data[heavy], k)]
        candidates[keep_heavy] = True
    kept = np.flatnonzero(candidates)
    return kept[_sorted_top_k(owner[kept], matrix.indices[kept], matrix.data[kept], k)]


#: Weight of a partner's popularity (its share of baskets, best-seller = 1) beside its confidence in the
#: cross-sell score: first purchases go mostly to popular products, and on the sample and the benchmark's
#: data 0.3 keeps cross-sell at least level with best-sellers while offering ~40 % of the catalogue.
CROSS_SELL_POPULARITY = 0.3
#: Shape of the Gamma distribution of the days between two purchases of one product by one customer
#: (3: fairly regular, the spread of a monthly shop).
GAP_SHAPE = 3.0
#: Half of a bought product's repurchase score is the habit alone, half depends on being due: timing
#: helps where products have cycles and must not bury a favourite bought last week where they have none
#: (chosen on the sample and the benchmark's data: next-basket NDCG at least buy-again's on both).
DUE_SHARE = 0.5
#: After this many of the customer's cycles without buying it, a product's score fades ...
LAPSE_AFTER_CYCLES = 3.0
#: ... by exp(-LAPSE_RATE) per further cycle.
LAPSE_RATE = 0.25


def repurchase_score(times: np.ndarray, days_since: np.ndarray, cycle_days: np.ndarray,
                     horizon_days: float) -> np.ndarray:
    """A customer's signal to buy a product again within ``horizon_days``.

    ``log(1 + times)`` (how established the habit is) times ``1 - DUE_SHARE + DUE_SHARE * due``, where
    ``due`` is the probability that the next purchase falls in the next ``horizon_days`` given
    ``days_since`` the last one, when the gap between purchases is Gamma-distributed (shape
    :data:`GAP_SHAPE`) with mean ``cycle_days``; faded by ``exp(-LAPSE_RATE * (cycles - LAPSE_AFTER_CYCLES))``
    once more than :data:`LAPSE_AFTER_CYCLES` cycles have passed (the habit has probably stopped).

    Parameters
    ----------
    times : array
        Orders in which the customer bought the product (at least 1).
    days_since : array
        Days from the last of them to the as-of date.
    cycle_days : array
        The customer's mean gap for the product, or the product's typical cycle after one purchase.
    horizon_days : float
        The window the list is for.
    """
    from scipy.special import gammainc

    times = np.asarray(times, dtype=float)
    since = np.asarray(days_since, dtype=float)
    cycle = np.maximum(np.asarray(cycle_days, dtype=float), 1.0)

    def gap_cdf(days: np.ndarray) -> np.ndarray:
        return gammainc(GAP_SHAPE, days * GAP_SHAPE / cycle)

    due = np.clip((gap_cdf(since + horizon_days) - gap_cdf(since)) / np.maximum(1.0 - gap_cdf(since), 1e-12), 0, 1)
    lapsed = np.exp(-LAPSE_RATE * np.maximum(since / cycle - LAPSE_AFTER_CYCLES, 0.0))
    return np.log1p(times) * (1.0 - DUE_SHARE + DUE_SHARE * due) * lapsed


def ranking_metrics(hits: np.ndarray, relevant: np.ndarray) -> pd.DataFrame:
    """Per-customer precision, recall, NDCG, average precision and hit at ``k`` from a hit matrix.

    Parameters
    ----------
    hits : (n, k) bool array
        ``hits[c, r]``: the product at rank ``r + 1`` of customer ``c``'s list was bought in the test window
        (an empty slot is ``False``).
    relevant : (n,) int array
        How many distinct products customer ``c`` bought in the test window (at least 1).

    Returns
    -------
    DataFrame with ``precision`` (hits / k), ``recall`` (hits / relevant), ``ndcg`` (binary gains,
    ``1 / log2(rank + 1)``, over the ideal list of ``min(k, relevant)`` hits), ``map`` (average precision:
    the precision at each hit's rank, summed and divided by ``min(k, relevant)``) and ``hit_rate``
    (1 when any product of the list was bought).
    """
    hits = np.asarray(hits, dtype=bool)
    relevant = np.asarray(relevant, dtype=float)
    n, k = hits.shape
    if np.any(relevant < 1):
        raise ValueError("every evaluated customer needs at least one relevant product")
    gains = 1.0 / np.log2(np.arange(2, k + 2))
    n_hits = hits.sum(axis=1)
    ideal_len = np.minimum(relevant, k).astype(int)
    ideal = np.concatenate([[0.0], np.cumsum(gains)])[ideal_len]
    precision_at = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    return pd.DataFrame({
        "precision": n_hits / k,
        "recall": n_hits / relevant,
        "ndcg": (hits * gains).sum(axis=1) / ideal,
        "map": (precision_at * hits).sum(axis=1) / ideal_len,
        "hit_rate": (n_hits > 0).astype(float),
    })


def metric_summary(values: np.ndarray) -> tuple[float, float, float]:
    """Mean with the 95 % interval ``mean +- 1.96 * sd / sqrt(n)`` (sd with n - 1); NaN bounds below n = 2."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(values.mean())
    if values.size < 2:
        return mean, float("nan"), float("nan")
    half = 1.96 * float(values.std(ddof=1)) / np.sqrt(values.size)
    return mean, mean - half, mean + half


class ProductRecommender:
    """Next-basket and cross-sell lists and "also bought" neighbours, fitted on order lines.

    Parameters
    ----------
    k : int
        Products per customer list.
    neighbours : int
        "Also bought" partners kept per product (the co-occurrence is sparsified to these).
    min_product_baskets : int
        Products bought in fewer baskets take no part in co-occurrence.
    min_pair_baskets : int
        Minimum support of a pair, in baskets (lift favours rare products; this keeps chance pairs out).
    max_basket_size : int
        Larger baskets keep only their best-selling products for co-occurrence.
    horizon_days : int
        The window the next-basket list is for (the repurchase probability is over this many days).
    cooc_weight : float
        Weight of the co-occurrence term (0..1 per customer) next to the repurchase probability.
    exclude_products, exclude_categories : sequence of str
        Never recommended (business filters, applied before the lists are cut to ``k``).

    Examples
    --------
    >>> rec = ProductRecommender(k=10).fit(engine.table("order_lines"), "2024-06-30")   # doctest: +SKIP
    >>> rec.recommendations("next_basket").head()                                        # doctest: +SKIP
    """

    def __init__(self, *, k: int = 10, neighbours: int = 20, min_product_baskets: int = 5,
                 min_pair_baskets: int = 3, max_basket_size: int = 30, horizon_days: int = 30,
                 cooc_weight: float = 0.1, exclude_products: tuple[str, ...] | list[str] = (),
                 exclude_categories: tuple[str, ...] | list[str] = ()) -> None:
        if k < 1 or neighbours < 1 or max_basket_size < 2 or horizon_days < 1:
            raise ValueError("k, neighbours and horizon_days must be at least 1, max_basket_size at least 2")
        if min_product_baskets < 1 or min_pair_baskets < 1 or cooc_weight < 0:
            raise ValueError("minimum supports must be at least 1 and cooc_weight not negative")
        self.k = int(k)
        self.neighbours = int(neighbours)
        self.min_product_baskets = int(min_product_baskets)
        self.min_pair_baskets = int(min_pair_baskets)
        self.max_basket_size = int(max_basket_size)
        self.horizon_days = int(horizon_days)
        self.cooc_weight = float(cooc_weight)
        self.exclude_products = tuple(str(p) for p in exclude_products)
        self.exclude_categories = tuple(str(c) for c in exclude_categories)

    @classmethod
    def from_settings(cls, settings: RecommendSettings) -> ProductRecommender:
        """A recommender with the settings of a :class:`RecommendSettings`."""
        return cls(**{name: getattr(settings, name) for name in RecommendSettings.__dataclass_fields__
                      if name != "evaluation_customers"})

    def __repr__(self) -> str:
        head = (f"k={self.k}, neighbours={self.neighbours}, min_pair_baskets={self.min_pair_baskets}, "
                f"horizon_days={self.horizon_days}, cooc_weight={self.cooc_weight}")
        if not hasattr(self, "products_"):
            return f"<ProductRecommender: not fitted, {head}>"
        return (f"<ProductRecommender: fitted up to {self.as_of_} on {self.n_customers_:,} customers, "
                f"{len(self.products_):,} products, {self.n_baskets_:,} baskets, "
                f"{len(self.also_bought_):,} also-bought pairs; {head}>")

    # -- fit ------------------------------------------------------------------------------------------
    def fit(self, lines: Any, as_of: Any, *, segments: pd.DataFrame | None = None,
            purchases: Any = None) -> ProductRecommender:
        """Learn from the purchases up to ``as_of`` (inclusive).

        Parameters
        ----------
        lines : ibis.Table
            The ``order_lines`` table (an engine table or any Ibis table on a DuckDB backend).
        as_of : date-like
            The last day of data used.
        segments : DataFrame, optional
            ``customer_key, segment`` (RFM segments): the cross-sell fallback ranks products within the
            customer's segment.
        purchases : ibis.Table, optional
            :func:`purchase_lines` of ``lines`` up to a date at or after ``as_of``, stored once by the
            caller so that several fits (the holdout's and the final one) share one scan of the lines.

        Returns
        -------
        self

        Raises
        ------
        CannotCompute
            When nobody bought anything up to ``as_of``.
        """
        _FitQueries(self, lines, [as_of], purchases=purchases).fit(self, 0, segments=segments)
        return self

    def _set_products(self, frame: pd.DataFrame, n_baskets: int, largest: int) -> None:
        """The catalogue (``product_id, baskets`` and the attributes, best-seller first) and basket counts."""
        self.n_baskets_ = int(n_baskets)
        self.largest_basket_ = int(largest) if self.n_baskets_ else 0
        frame = frame.reset_index(drop=True)
        for col in ("product_name", "category", "brand"):
            if col not in frame.columns:
                frame[col] = None
        frame["excluded"] = (frame["product_id"].isin(self.exclude_products)
                             | frame["category"].isin(self.exclude_categories))
        self.products_ = frame

    def _set_history(self, customers: pa.Array, rows: np.ndarray, cols: np.ndarray, n: np.ndarray,
                     first: np.ndarray, last: np.ndarray, end_day: int) -> None:
        """The per-customer product history (one entry per customer row and catalogue index: orders ``n``,
        ``first`` and ``last`` epoch day, all int32) as matrices, with each entry's repurchase score."""
        self.customers_ = customers
        n_customers, n_products = len(self.customers_), len(self.products_)
        self.n_customers_ = n_customers
        shape = (n_customers, n_products)
        # the entries in CSR order (customer, then product): scipy's counting sort by row and a short sort
        # within each row are much faster than a lexsort of millions of pairs; data holds the permutation
        position_type = np.int32 if n.size < np.iinfo(np.int32).max else np.int64
        placed = sp.csr_matrix((np.arange(n.size, dtype=position_type), (rows, cols)), shape=shape)
        del rows
        placed.sort_indices()
        order, cols, indptr = placed.data, placed.indices, placed.indptr
        n, first, last = n[order], first[order], last[order]
        del placed, order
        rows = np.repeat(np.arange(n_customers, dtype=np.int64), np.diff(indptr))
        self._entry_keys = rows * n_products + cols     # ascending: the entries' order in the matrices below
        del rows
        # orders holding the product, per customer; its index arrays are shared by the binary history
        # (:meth:`_bought_rows`), while the repurchase matrix, pruned below, gets its own
        self._times = sp.csr_matrix((n, cols, indptr), shape=shape)
        self._first_day, self._last_day, self._end_day = first, last, end_day  # epoch days, entry order
        own_cycle = _own_cycle(n, first, last)
        # a product's typical cycle comes from the customers who bought it at least three times: two
        # purchases are as often chance as habit (the sample's planted cycles: median ratio 1.2 with three
        # or more, against 2.1 with two or more); products with no such buyer fall back to two
        cycle = _median_by(np.where(n >= 3, own_cycle, np.nan), cols, n_products)
        cycle = cycle.fillna(_median_by(own_cycle, cols, n_products))
        fallback = float(max(end_day - first.min() + 1, 1)) if first.size else 365.0
        self.products_["cycle_days"] = cycle.to_numpy()
        product_cycle = cycle.fillna(fallback).to_numpy()
        self._allowed = ~self.products_["excluded"].to_numpy()
        # the score's temporaries are float64 arrays of every entry: computed a block of entries at a time
        score = np.empty(n.size)
        for start in range(0, n.size, _ENTRY_BLOCK):
            part = slice(start, start + _ENTRY_BLOCK)
            part_cols = cols[part]
            since = (end_day - last[part]).astype(np.float64)
            personal_cycle = np.maximum(np.where(n[part] >= 2, own_cycle[part], product_cycle[part_cols]), 1.0)
            score[part] = (repurchase_score(n[part], since, personal_cycle, self.horizon_days)
                           * self._allowed[part_cols])
        del own_cycle
        repeat = sp.csr_matrix((score, cols.copy(), indptr.copy()), shape=shape)
        repeat.eliminate_zeros()
        self._repeat = repeat

    def _bought_rows(self, rows: np.ndarray) -> sp.csr_matrix:
        """The binary history (1.0 for each product bought) of customer ``rows``, in float64 like the
        neighbour matrices it is multiplied with."""
        bought = self._times[rows].astype(np.float64)
        bought.data[:] = 1.0
        return bought

    def _days_argument(self, entry: np.ndarray) -> np.ndarray:
        """A repeat reason's ``days`` for history entries ``entry``: the customer's own cycle, rounded, after
        two or more purchases; the days since the only one after one."""
        n = self._times.data[entry]
        last = self._last_day[entry]
        since = (self._end_day - last).astype(np.float64)
        cycle = _own_cycle(n, self._first_day[entry], last)
        return np.where(n >= 2, np.maximum(np.rint(cycle), 1), since).astype(np.int64)

    def _set_neighbours(self, table: pd.DataFrame) -> None:
        """The "also bought" partners (:data:`ALSO_BOUGHT_COLUMNS` with ``own_index, other_index``, sorted by
        product and rank) and the neighbour matrices the lists are scored with."""
        n_products = len(self.products_)
        i = table["own_index"].to_numpy(np.int64)
        j = table["other_index"].to_numpy(np.int64)
        # the neighbours are chosen by cosine; a customer's candidates are scored by confidence P(j | i),
        # which, unlike cosine, does not push best-sellers down (they are what people do buy next)
        self._neighbours = sp.csr_matrix((table["confidence"].to_numpy(float), (i, j)),
                                         shape=(n_products, n_products))
        self._link_rank = None  # laid out in full when first looked up (:meth:`_link_ranks`)
        # cross-sell candidates are the same partners, their confidence shrunk toward the partner's share
        # of baskets (best-seller first): what a customer buys for the first time is mostly popular
        popularity = self.products_["baskets"].to_numpy(float) / max(float(self.products_["baskets"].max()), 1.0)
        self._cross_neighbours = self._neighbours.copy()
        self._cross_neighbours.data = ((1 - CROSS_SELL_POPULARITY) * self._neighbours.data
                                       + CROSS_SELL_POPULARITY * popularity[self._neighbours.indices])
        self.also_bought_ = table[ALSO_BOUGHT_COLUMNS].copy()

    def _fit_segments(self, segments: pd.DataFrame | None) -> None:
        """Per-customer segment code and each segment's product ranking (most buyers first, allowed only)."""
        n_customers = len(self.customers_)
        self._segment_of = np.full(n_customers, -1, dtype=np.int64)
        self.segment_names_: list[str] = []
        self._segment_rankings: list[tuple[np.ndarray, int]] = []
        if segments is None or segments.empty:
            return
        index = pd.Index(self.customers_.to_pandas())
        seg = segments.dropna(subset=["segment"]).drop_duplicates("customer_key")
        positions = index.get_indexer(seg["customer_key"].astype(str))
        found = positions >= 0
        codes, names = pd.factorize(seg["segment"].astype(str).to_numpy()[found])
        self._segment_of[positions[found]] = codes
        self.segment_names_ = list(names)
        # buyers per (segment, product): a count over the history entries (each customer holds a product
        # once), which unlike a product of sparse matrices makes no copy of the history
        n_products = len(self.products_)
        segment = self._segment_of[self._entry_keys // n_products]
        member = segment >= 0
        buyers = np.bincount(segment[member] * n_products + self._times.indices[member],
                             minlength=len(names) * n_products).reshape(len(names), n_products).astype(np.float64)
        for s in range(len(names)):
            score = np.where(self._allowed & (buyers[s] > 0), buyers[s], 0.0)
            ranked = np.lexsort((np.arange(score.size), -score))
            own = int((score > 0).sum())
            self._segment_rankings.append((ranked[:own], own))

    # -- lists ----------------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "products_"):
            raise RuntimeError("call fit() first")

    def _popular_ranking(self) -> np.ndarray:
        return np.flatnonzero(self._allowed)  # catalogue order is best-seller first

    def _bought_keys(self, rows: np.ndarray) -> np.ndarray:
        """Sorted keys ``row * n_products + product`` of everything ``rows`` bought."""
        _owner, where = _expand_rows(self._times, rows)
        keys = self._entry_keys[where]
        return keys if rows.size < 2 or np.all(rows[1:] > rows[:-1]) else np.sort(keys)

    def _fill(self, rows: np.ndarray, have: np.ndarray, listed_keys: np.ndarray, *, exclude_bought: bool,
              by_segment: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fill each of ``rows`` up to ``k`` products: the segment's favourites (when ``by_segment``), then
        the best-sellers, skipping products already listed (and bought, when ``exclude_bought``).

        Returns (row, product index, reason number) of the added slots, in rank order per row.
        """
        n_products = len(self.products_)
        need = self.k - have
        todo = need > 0
        if not todo.any():
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        rows, need = rows[todo], need[todo]
        blocked = listed_keys
        if exclude_bought:
            blocked = np.sort(np.concatenate([blocked, self._bought_keys(rows)]))
        popular = self._popular_ranking()
        groups = self._segment_of[rows] if by_segment else np.full(rows.size, -1)
        out_rows, out_cols, out_reason = [], [], []
        for group in np.unique(groups):
            members = rows[groups == group]
            wanted = need[groups == group]
            if group >= 0:
                own, n_own = self._segment_rankings[group]
                ranking = np.r_[own, popular[~np.isin(popular, own)]]
            else:
                n_own, ranking = 0, popular
            if ranking.size == 0:
                continue
            reason = np.where(np.arange(ranking.size) < n_own, _R_SEGMENT, _R_POPULAR)
            width = min(ranking.size, self.k * 4)
            # most customers find their free slots among the first few best-sellers; only those who
            # bought nearly all of them are looked at again, with a wider window
            while members.size:
                keys = members[:, None] * n_products + ranking[None, :width]
                free = ~_contains(blocked, keys)
                count = np.cumsum(free, axis=1)
                taken = free & (count <= wanted[:, None])
                done = (count[:, -1] >= wanted) | (width >= ranking.size)
                r, c = np.nonzero(taken[done])
                out_rows.append(members[done][r])
                out_cols.append(ranking[c])
                out_reason.append(reason[c])
                members, wanted = members[~done], wanted[~done]
                width = min(ranking.size, width * 4)
        if not out_rows:  # every product is excluded or bought
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(out_rows), np.concatenate(out_cols), np.concatenate(out_reason)

    def _link_ranks(self) -> np.ndarray:
        """The neighbour matrix laid out in full (row-major, flat) as the rank of each value among its
        distinct positive values (1 = the weakest link; 0 = not neighbours)."""
        if getattr(self, "_link_rank", None) is None:
            flat = self._neighbours.toarray().ravel()
            positive = np.unique(flat[flat > 0])
            self._link_rank = np.where(flat > 0, np.searchsorted(positive, flat) + 1, 0).astype(np.int64)
        return self._link_rank

    def _strongest_link(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """For each recommended (customer row, product): the product of the customer's history most
        similar to it (-1 when none is a neighbour; among equally similar ones, the best-seller)."""
        best = np.full(rows.size, -1, dtype=np.int64)
        if self._neighbours.nnz == 0 or rows.size == 0:
            return best
        n_products = self._neighbours.shape[0]
        # each recommendation's history entries, contiguous; ``offset`` is an entry's place in its group
        starts = self._times.indptr[rows]
        lengths = self._times.indptr[rows + 1] - starts
        group_start = np.cumsum(lengths) - lengths
        offset = np.arange(int(lengths.sum())) - np.repeat(group_start, lengths)
        history = self._times.indices[np.repeat(starts, lengths) + offset].astype(np.int64)
        other = np.repeat(cols, lengths)
        has = lengths > 0
        if offset.size == 0:
            return best
        if n_products * n_products <= _DENSE_NEIGHBOURS:
            # a catalogue of a few hundred products: one reduction of a key that orders the entries by
            # similarity, then by earlier place (a customer holds each product once, so a place is below
            # ``width``), picks the strongest link and, among equals, the first (best-selling) product
            width = 1 << int(n_products).bit_length()
            key = self._link_ranks()[history * n_products + other] * width + (width - 1 - offset)
            peak = np.maximum.reduceat(key, group_start[has])
            ok = peak >= width  # a rank of at least 1: a neighbour
            at = (width - 1 - peak % width)[ok]
            best[np.flatnonzero(has)[ok]] = history[group_start[has][ok] + at]
            return best
        # a lookup in the neighbour matrix's own rows (a few entries each) beats a search of all pairs
        value = np.asarray(self._neighbours[history, other]).ravel()
        peak = np.maximum.reduceat(value, group_start[has])
        position = np.arange(offset.size)
        at_peak = np.where(value == np.repeat(peak, lengths[has]), position, offset.size)
        chosen = np.minimum.reduceat(at_peak, group_start[has])
        ok = value[chosen] > 0
        best[np.flatnonzero(has)[ok]] = history[chosen[ok]]
        return best

    def _scored_chunk(self, rows: np.ndarray, list_name: str) -> dict[str, np.ndarray]:
        """The top-``k`` list of ``list_name`` for customer ``rows`` with score and reason arguments."""
        k, n_products = self.k, len(self.products_)
        bought = self._bought_rows(rows)
        # excluded products have no column in the neighbour matrix and no repurchase score (see fit)
        if list_name == "cross_sell":
            cooc = (bought @ self._cross_neighbours).tocsr()
            cooc = (cooc - cooc.multiply(bought)).tocsr()
            cooc.eliminate_zeros()
            scores, repeat = cooc, None
        else:
            cooc = (bought @ self._neighbours).tocsr()
            peak = cooc.max(axis=1).toarray().ravel()
            scale = np.divide(1.0, peak, out=np.zeros_like(peak), where=peak > 0)
            cooc.data *= np.repeat(scale, np.diff(cooc.indptr))
            repeat = self._repeat[rows]
            scores = (repeat + self.cooc_weight * cooc).tocsr()
        pick = _top_k(scores, k)
        pick_rows = np.searchsorted(scores.indptr, pick, side="right") - 1
        pick_cols, pick_scores = scores.indices[pick].astype(np.int64), scores.data[pick]
        reason = np.full(pick.size, _R_WITH, dtype=np.int64)
        if repeat is not None:
            rep_value = np.asarray(repeat[pick_rows, pick_cols]).ravel()
            co_value = self.cooc_weight * np.asarray(cooc[pick_rows, pick_cols]).ravel()
            times = np.asarray(self._times[rows[pick_rows], pick_cols]).ravel()
            reason = np.where((rep_value >= co_value) & (times > 0), np.where(times >= 2, _R_REPEAT, _R_ONCE), _R_WITH)
        have = np.bincount(pick_rows, minlength=rows.size)
        listed = np.sort(rows[pick_rows] * n_products + pick_cols)
        fill_rows, fill_cols, fill_reason = self._fill(rows, have, listed,
                                                       exclude_bought=list_name == "cross_sell",
                                                       by_segment=list_name == "cross_sell")
        position = np.full(rows.max() + 1 if rows.size else 0, -1, dtype=np.int64)
        position[rows] = np.arange(rows.size)
        all_local = np.r_[pick_rows, position[fill_rows]]
        all_cols = np.r_[pick_cols, fill_cols]
        all_scores = np.r_[pick_scores, np.zeros(fill_cols.size)]
        all_reason = np.r_[reason, fill_reason]
        order = np.argsort(all_local, kind="stable")  # picks come before fills within a row
        all_local, all_cols, all_scores, all_reason = (a[order] for a in (all_local, all_cols, all_scores, all_reason))
        rank = _rank_in_group(all_local, rows.size) + 1
        customer_rows = rows[all_local]
        n_arg = np.full(all_local.size, -1, dtype=np.int64)
        days_arg = np.full(all_local.size, -1, dtype=np.int64)
        product_arg = np.full(all_local.size, -1, dtype=np.int64)
        repeated = np.isin(all_reason, (_R_REPEAT, _R_ONCE))
        if repeated.any():
            entry = self._entry_positions(customer_rows[repeated], all_cols[repeated])
            n_arg[repeated] = self._times.data[entry].astype(np.int64)
            days_arg[repeated] = self._days_argument(entry)
        linked = all_reason == _R_WITH
        if linked.any():
            product_arg[linked] = self._strongest_link(customer_rows[linked], all_cols[linked])
        return {"row": customer_rows, "rank": rank, "col": all_cols, "score": all_scores, "reason": all_reason,
                "n": n_arg, "days": days_arg, "product": product_arg}

    def _entry_positions(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Index into the history matrices' ``data`` of each (row, col) - which must be stored."""
        keys = rows * len(self.products_) + cols
        pos = np.minimum(np.searchsorted(self._entry_keys, keys), self._entry_keys.size - 1)
        if np.any(self._entry_keys[pos] != keys):
            raise AssertionError("a repeat reason for a product the customer never bought")
        return pos

    def _lists(self, list_name: str, rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
        self._check_fitted()
        if list_name not in LISTS:
            raise ValueError(f"unknown list {list_name!r}: use one of {', '.join(LISTS)}")
        rows = np.arange(self.n_customers_) if rows is None else np.asarray(rows, dtype=np.int64)
        parts = [self._scored_chunk(rows[s:s + _CHUNK], list_name) for s in range(0, rows.size, _CHUNK)]
        if not parts:
            return {key: np.zeros(0) for key in ("row", "rank", "col", "score", "reason", "n", "days", "product")}
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

    def recommendations(self, list_name: str, customers: np.ndarray | None = None) -> pa.Table:
        """The ``list_name`` list (``next_basket`` or ``cross_sell``) of every customer (or of the customer
        rows ``customers``), as an Arrow table with :data:`RECOMMENDATION_COLUMNS`."""
        self._check_fitted()
        if list_name not in LISTS:
            raise ValueError(f"unknown list {list_name!r}: use one of {', '.join(LISTS)}")
        chunks = list(self.iter_recommendations(list_name, customers))
        return pa.concat_tables(chunks) if chunks else self._arrow(self._lists(list_name, np.zeros(0, np.int64)),
                                                                   list_name)

    def iter_recommendations(self, list_name: str, customers: np.ndarray | None = None, *, observe: Any = None):
        """:meth:`recommendations` one chunk of customers at a time (Arrow tables), so that a writer can
        store a million customers' lists without holding them all in memory. ``observe(list_name, lists)``,
        when given, sees each chunk's lists as arrays first (row, rank, col, score, reason, n, days,
        product: see :meth:`_scored_chunk`)."""
        self._check_fitted()
        if list_name not in LISTS:
            raise ValueError(f"unknown list {list_name!r}: use one of {', '.join(LISTS)}")
        rows = np.arange(self.n_customers_) if customers is None else np.asarray(customers, dtype=np.int64)
        for start in range(0, rows.size, _CHUNK):
            lists = self._scored_chunk(rows[start:start + _CHUNK], list_name)
            if observe is not None:
                observe(list_name, lists)
            yield self._arrow(lists, list_name)

    def _arrow(self, lists: dict[str, np.ndarray], list_name: str) -> pa.Table:
        if not hasattr(self, "_product_ids"):
            self._product_ids = pa.array(self.products_["product_id"].astype(str).tolist(), pa.string())
        ids = self._product_ids
        row = lists["row"].astype(np.int64)
        product_arg = lists["product"].astype(np.int64)
        segment_arg = np.where(lists["reason"] == _R_SEGMENT, self._segment_of[row], -1) if row.size else row
        segments = pa.array(self.segment_names_ or [""], pa.string())
        return pa.table({
            "customer_key": pc.take(self.customers_, pa.array(row)).cast(pa.string()),
            "list": pc.take(pa.array([list_name], pa.string()), pa.array(np.zeros(row.size, np.int32))),
            "rank": pa.array(lists["rank"].astype(np.int64)),
            "product_id": pc.take(ids, pa.array(lists["col"].astype(np.int64))),
            "score": pa.array(lists["score"].astype(np.float64)),
            "reason": pc.take(pa.array(list(REASONS), pa.string()), pa.array(lists["reason"].astype(np.int64))),
            "reason_n": pa.array(lists["n"].astype(np.int64), mask=lists["n"] < 0),
            "reason_days": pa.array(lists["days"].astype(np.int64), mask=lists["days"] < 0),
            "reason_product_id": pc.take(ids, pa.array(product_arg, mask=product_arg < 0)),
            "reason_segment": pc.take(segments, pa.array(segment_arg, mask=segment_arg < 0)),
        })

    def buy_again(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Baseline: each customer's most frequently bought products (ties: the most recent, then the
        best-seller), filled with best-sellers. Returns (row, product index) in rank order."""
        rows = np.asarray(rows, dtype=np.int64)
        owner, where = _expand_rows(self._times, rows)
        cols = self._times.indices[where].astype(np.int64)
        keep = self._allowed[cols]
        owner, where, cols = owner[keep], where[keep], cols[keep]
        order = np.lexsort((cols, -self._last_day[where], -self._times.data[where], owner))
        owner, cols = owner[order], cols[order]
        rank = _rank_in_group(owner, rows.size)
        top = rank < self.k
        have = np.bincount(owner[top], minlength=rows.size)
        listed = np.sort(rows[owner[top]] * len(self.products_) + cols[top])
        fill_rows, fill_cols, _unused = self._fill(rows, have, listed, exclude_bought=False, by_segment=False)
        return _in_rank_order(np.r_[rows[owner[top]], fill_rows], np.r_[cols[top], fill_cols])

    def popular(self, rows: np.ndarray, *, exclude_bought: bool) -> tuple[np.ndarray, np.ndarray]:
        """Baseline: the best-sellers (never-bought ones only with ``exclude_bought``), as (row, product index)."""
        rows = np.asarray(rows, dtype=np.int64)
        fill_rows, fill_cols, _unused = self._fill(rows, np.zeros(rows.size, np.int64), np.zeros(0, np.int64),
                                                   exclude_bought=exclude_bought, by_segment=False)
        return _in_rank_order(fill_rows, fill_cols)


class _FitQueries:
    """The engine's part of fitting recommenders up to one or more dates (the holdout's cutoff and the
    as-of date): every query reads the purchases once for all the dates, with one aggregate per date, and
    the history reaches Python once. :meth:`fit` then hands one date's answers to a recommender.

    Parameters
    ----------
    settings : ProductRecommender
        Whose settings (supports, basket cap, exclusions) the queries use.
    lines : ibis.Table
        The ``order_lines`` table.
    ends : list of date-like
        The last day of data of each fit.
    purchases : ibis.Table, optional
        :func:`purchase_lines` up to ``max(ends)`` or later, stored by the caller; else stored here.
    """

    def __init__(self, settings: ProductRecommender, lines: Any, ends: list[Any], *, purchases: Any = None) -> None:
        import ibis

        from crmlib.engine import ScratchGroup

        self.ends = [_as_date(e) for e in ends]
        self._last = max(self.ends)
        scratch = ScratchGroup(lines, "rec")
        if purchases is None:
            buys = scratch.store(purchase_lines(lines, end=self._last))
        else:
            buys = purchases.filter(purchases.day <= ibis.literal(self._last, type="date"))
        try:
            self._products(lines, buys)
            self.pairs: list[pd.DataFrame | None] = [None] * len(self.ends)
            self.history: list[tuple[np.ndarray, ...] | None] = [None] * len(self.ends)
            if len(self.catalogue):
                stored = scratch.store(ibis.memtable(
                    self.catalogue[self._engine_columns], schema=ibis.schema(self._engine_schema)))
                # the engine's largest query (the basket self-join) runs before the history arrives in
                # Python: the engine's working memory for it and the history's arrays do not add up
                self._pairs(settings, buys, stored, scratch)
                self._history(buys, stored)
        finally:
            scratch.drop()

    def _within(self, day: Any, i: int) -> Any:
        """The condition "``day`` is up to end ``i``"; None for the last date, which every purchase is within."""
        import ibis

        return None if self.ends[i] == self._last else day <= ibis.literal(self.ends[i], type="date")

    def _products(self, lines: Any, buys: Any) -> None:
        """Baskets per product up to each date (buys hold one row per basket and product), the attributes,
        each date's catalogue index (most baskets first, then product id) and the basket counts."""
        dates = range(len(self.ends))
        counts = buys.group_by("product_id").agg(
            **{f"baskets_{i}": buys.count(where=self._within(buys.day, i)) for i in dates})
        attributes = [c for c in ("product_name", "category", "brand") if c in lines.columns]
        names = lines.filter(lines.product_id.notnull()).group_by(
            product_id=lines.product_id.cast("string")).agg(**{c: lines[c].cast("string").max() for c in attributes})
        frame = counts.left_join(names, "product_id").select(
            "product_id", *[f"baskets_{i}" for i in dates], *attributes).to_pandas()
        last = self.ends.index(self._last)
        # the last date's order numbers the products for the engine (``code``): it holds every product
        frame = frame.sort_values([f"baskets_{last}", "product_id"], ascending=[False, True]).reset_index(drop=True)
        frame["code"] = np.arange(len(frame), dtype=np.int64)
        for i in dates:
            bought = frame[frame[f"baskets_{i}"] > 0].sort_values([f"baskets_{i}", "product_id"],
                                                                   ascending=[False, True])
            index = np.full(len(frame), -1, dtype=np.int64)
            index[bought["code"].to_numpy()] = np.arange(len(bought))
            frame[f"index_{i}"] = index
        self.attributes = attributes
        self.catalogue = frame
        self._engine_schema = {"product_id": "string", "code": "int64",
                               **{f"{c}_{i}": "int64" for i in dates for c in ("baskets", "index")}}
        if "category" in attributes:
            self._engine_schema["category"] = "string"
        self._engine_columns = list(self._engine_schema)
        # a basket is one (customer, order); its size up to each date
        sizes = buys.group_by(["customer_key", "order_id"]).agg(
            **{f"size_{i}": buys.count(where=self._within(buys.day, i)) for i in dates})
        stats = sizes.aggregate(**{name: value for i in dates for name, value in (
            (f"baskets_{i}", sizes.count() if i == last else (sizes[f"size_{i}"] > 0).sum()),
            (f"largest_{i}", sizes[f"size_{i}"].max()))}).to_pandas().iloc[0]
        self.n_baskets = [_whole(stats[f"baskets_{i}"]) for i in dates]
        self.largest = [_whole(stats[f"largest_{i}"]) for i in dates]

    def _pairs(self, settings: ProductRecommender, buys: Any, stored: Any, scratch: Any) -> None:
        """Each date's "also bought" partners (:meth:`ProductRecommender._set_neighbours`'s table).

        Pairs are counted on integer product numbers, not product ids: the self-join of the baskets and
        its group-by then hold integers instead of strings. Dates whose baskets are all within the cap
        share one self-join with a count per date; a date with larger baskets keeps each basket's
        best-selling products by that date's counts (:func:`co_occurrence`), in a query of its own.
        ``scratch`` (a :class:`crmlib.engine.ScratchGroup`) keeps the shared pair counts.
        """
        dates = range(len(self.ends))
        capped = [self.largest[i] > settings.max_basket_size for i in dates]
        counted: dict[int, tuple[Any, str]] = {}
        shared = [i for i in dates if not capped[i]]
        if shared:
            last = self.ends.index(self._last)
            kept = stored.filter(stored[f"baskets_{last}"] >= settings.min_product_baskets)
            items = buys.join(kept.select("product_id", "code"), "product_id").select(
                "customer_key", "order_id", "code", "day")
            other = items.select("customer_key", "order_id", other_code=items.code, other_day=items.day)
            # each product also pairs with itself here: that is left out when the stored pairs are read, since
            # an inequality in this query lets DuckDB's planner join the catalogue to both sides of the
            # self-join in a nested loop (tens of GB of spill at a million customers)
            pairs = items.join(other, ["customer_key", "order_id"])
            per_date = {}
            for i in shared:
                mine, theirs = self._within(pairs.day, i), self._within(pairs.other_day, i)
                per_date[f"baskets_{i}"] = pairs.count(where=None if mine is None else mine & theirs)
            table = pairs.group_by(["code", "other_code"]).agg(**per_date)
            # every date's count is at most the last date's: this keeps each date's frequent pairs
            table = table.filter(functools.reduce(
                operator.or_, [table[f"baskets_{i}"] >= settings.min_pair_baskets for i in shared]))
            table = scratch.store(table)
            for i in shared:
                counted[i] = (table.select(own_key=table.code, other_key=table.other_code,
                                           baskets=table[f"baskets_{i}"]), "code")
        for i in dates:
            if not capped[i]:
                continue
            index = stored[f"index_{i}"]
            within = self._within(buys.day, i)
            indexed = buys if within is None else buys.filter(within)
            indexed = indexed.join(stored.filter(index >= 0).select("product_id", product_index=index), "product_id")
            indexed = indexed.select("customer_key", "order_id", product_id=indexed.product_index)
            supports = stored.filter(index >= 0).select(product_id=index, baskets=stored[f"baskets_{i}"])
            pairs = co_occurrence(indexed, supports, min_product_baskets=settings.min_product_baskets,
                                  max_basket_size=settings.max_basket_size, min_pair_baskets=settings.min_pair_baskets)
            counted[i] = (pairs.select(own_key=pairs.product_id, other_key=pairs.other_product_id,
                                       baskets=pairs.baskets), f"index_{i}")
        for i in dates:
            self.pairs[i] = self._scored_pairs(settings, stored, *counted[i], i)

    def _scored_pairs(self, settings: ProductRecommender, stored: Any, pairs: Any, key: str, i: int) -> pd.DataFrame:
        """Support, confidence, lift and cosine of date ``i``'s pairs (``own_key, other_key, baskets``, keyed
        by ``stored[key]``), each product's ``neighbours`` strongest partners."""
        import ibis

        present = stored.filter(stored[f"baskets_{i}"] >= settings.min_product_baskets)
        category = present.category if "category" in present.columns else ibis.null().cast("string")
        mine = present.select(own_key=present[key], product_id=present.product_id,
                              own_baskets=present[f"baskets_{i}"], own_index=present[f"index_{i}"])
        other = present.select(other_key=present[key], other_product_id=present.product_id,
                               other_baskets=present[f"baskets_{i}"], other_index=present[f"index_{i}"],
                               other_category=category)
        pairs = pairs.filter((pairs.baskets >= settings.min_pair_baskets) & (pairs.own_key != pairs.other_key))
        pairs = pairs.join(mine, "own_key").join(other, "other_key")
        if settings.exclude_products:
            pairs = pairs.filter(~pairs.other_product_id.isin(list(settings.exclude_products)))
        if settings.exclude_categories:
            pairs = pairs.filter(pairs.other_category.isnull()
                                 | ~pairs.other_category.isin(list(settings.exclude_categories)))
        total = float(max(self.n_baskets[i], 1))
        # counts cast to float before meeting ``total``: Spark reads a float literal as a DECIMAL, and the
        # quotient would be rounded to 6 places
        together = pairs.baskets.cast("float64")
        scored = pairs.mutate(
            support=together / total,
            confidence=pairs.baskets / pairs.own_baskets,
            lift=together * total / (pairs.own_baskets * pairs.other_baskets),
            cosine=pairs.baskets / (pairs.own_baskets.cast("float64") * pairs.other_baskets).sqrt())
        # two best-sellers share many baskets by chance alone: a partner must be bought with the product
        # more often than chance (lift above 1), or "often bought with" would not be true
        scored = scored.filter(scored.lift > 1)
        ranked = scored.mutate(rank=ibis.row_number().over(ibis.window(
            group_by=scored.product_id,
            order_by=[ibis.desc(scored.cosine), ibis.desc(scored.baskets), scored.other_index])))
        ranked = ranked.filter(ranked["rank"] < settings.neighbours)
        table = ranked.select("product_id", "other_product_id", "own_index", "other_index",
                              rank=(ranked["rank"] + 1).cast("int64"), baskets=ranked.baskets.cast("int64"),
                              support="support", confidence="confidence", lift="lift", cosine="cosine").to_pandas()
        return table.sort_values(["own_index", "rank"]).reset_index(drop=True)

    def _history(self, buys: Any, stored: Any) -> None:
        """Per (customer, product): orders, first and last day up to each date, in one query."""
        coded = buys.join(stored.select("product_id", "code"), "product_id")
        aggregates = {}
        for i in range(len(self.ends)):
            within = self._within(coded.day, i)
            aggregates[f"n_{i}"] = coded.count(where=within)
            aggregates[f"first_{i}"] = coded.day.min(where=within).epoch_days()
            aggregates[f"last_{i}"] = coded.day.max(where=within).epoch_days()
        history = coded.group_by(["customer_key", "code"]).agg(**aggregates)
        # a product number, a count of orders and epoch days: int32 holds them exactly, and the Arrow copy
        # of every date's columns then takes no more memory than one date's did as int64
        arrow = history.select("customer_key", **{c: history[c].cast("int32") for c in history.columns[1:]}).to_pyarrow()
        # each column is narrowed and let go of as soon as it is read: the Arrow copy of a million
        # customers' history is the largest thing this step holds
        encoded = pc.dictionary_encode(arrow["customer_key"]).combine_chunks()
        arrow = arrow.drop_columns(["customer_key"])
        self.customers = encoded.dictionary
        self.rows = encoded.indices.to_numpy()
        del encoded
        self.codes = arrow["code"].to_numpy().astype(np.int32)
        arrow = arrow.drop_columns(["code"])
        for i in range(len(self.ends)):
            columns = []
            for name in (f"n_{i}", f"first_{i}", f"last_{i}"):  # a day is null where n is 0
                columns.append(arrow[name].fill_null(0).to_numpy().astype(np.int32))
                arrow = arrow.drop_columns([name])
            self.history[i] = tuple(columns)
        del arrow
        pa.default_memory_pool().release_unused()  # the Arrow copy of the history is gone: give it back

    def fit(self, rec: ProductRecommender, i: int, *, segments: pd.DataFrame | None = None) -> ProductRecommender:
        """Give ``rec`` the fit up to date ``i`` (and let go of that date's answers).

        Raises
        ------
        CannotCompute
            When nobody bought anything up to that date.
        """
        rec.as_of_ = self.ends[i]
        index = self.catalogue[f"index_{i}"].to_numpy()
        bought = self.catalogue[index >= 0].sort_values(f"index_{i}")
        if bought.empty:
            raise CannotCompute(_("no product was bought up to {date}: recommendations need order lines "
                                  "with a positive amount.").format(date=rec.as_of_))
        products = bought[["product_id", f"baskets_{i}", *self.attributes]].rename(columns={f"baskets_{i}": "baskets"})
        rec._set_products(products, self.n_baskets[i], self.largest[i])
        rec._set_neighbours(self.pairs[i])
        self.pairs[i] = None
        n, first, last = self.history[i]
        self.history[i] = None
        if self.ends[i] == self._last:
            customers, rows, codes = self.customers, self.rows, self.codes
        else:  # the customers who bought by this date, in the same order
            keep = np.flatnonzero(n > 0)
            n, first, last, rows, codes = n[keep], first[keep], last[keep], self.rows[keep], self.codes[keep]
            present = np.zeros(len(self.customers), dtype=bool)
            present[rows] = True
            customers = self.customers.take(pa.array(np.flatnonzero(present)))
            rows = (np.cumsum(present) - 1)[rows]
        if all(h is None for h in self.history):  # the last fit: the shared arrays go with it
            del self.rows, self.codes
        end_day = (rec.as_of_ - dt.date(1970, 1, 1)).days
        rec._set_history(customers, rows, index[codes], n, first, last, end_day)
        rec._fit_segments(segments)
        return rec


def _whole(value: Any) -> int:
    """An engine count as an int (0 where an aggregate of no rows is null)."""
    return 0 if value is None or pd.isna(value) else int(value)


def _median_by(values: np.ndarray, groups: np.ndarray, n_groups: int) -> pd.Series:
    """Median of the non-missing ``values`` per group 0..n_groups-1 (NaN where a group has none)."""
    # most entries are missing (bought once): leaving them out first keeps the group-by small
    known = ~np.isnan(values)
    return pd.Series(values[known]).groupby(groups[known]).median().reindex(range(n_groups))


def _own_cycle(times: np.ndarray, first_day: np.ndarray, last_day: np.ndarray) -> np.ndarray:
    """A customer's mean days between purchases of a product bought ``times`` times from ``first_day`` to
    ``last_day`` (NaN after a single purchase)."""
    return np.where(times >= 2, (last_day - first_day) / np.maximum(times - 1, 1), np.nan)


def _rank_in_group(groups: np.ndarray, n_groups: int) -> np.ndarray:
    """0-based position of each entry within its group, for ``groups`` sorted ascending in 0..n_groups-1."""
    counts = np.bincount(groups, minlength=n_groups)
    return np.arange(groups.size) - np.repeat(np.cumsum(counts) - counts, counts)


def _in_rank_order(rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(rows, kind="stable")
    return rows[order], cols[order]


# -- evaluation -------------------------------------------------------------------------------------
def _hit_matrix(rec_rows: np.ndarray, rec_cols: np.ndarray, customers: np.ndarray, truth_keys: np.ndarray,
                n_products: int, k: int) -> np.ndarray:
    """(customers x k) hits of lists given as (row, product) in rank order per row."""
    position = pd.Index(customers).get_indexer(rec_rows)
    rank = np.arange(rec_rows.size) - np.searchsorted(rec_rows, rec_rows)
    hits = np.zeros((customers.size, k), dtype=bool)
    ok = (position >= 0) & (rank < k)
    hits[position[ok], rank[ok]] = _contains(truth_keys, rec_rows[ok] * n_products + rec_cols[ok])
    return hits


@dataclass
class Holdout:
    """A temporal split: the recommender fitted up to ``train_end`` and what customers bought after it.

    ``rows``/``keys`` hold one entry per (warm customer, product bought in the test window): the customer's
    row in ``recommender`` and ``row * n_products + product`` (a negative key for a product unseen in
    training, which no list can hold but which still counts as relevant).
    """

    recommender: ProductRecommender
    rows: np.ndarray
    keys: np.ndarray
    new_to_customer: np.ndarray
    cold_customers: int
    unseen_products: int
    test_customers: int
    train_end: dt.date
    test_end: dt.date

    def truth(self, list_name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(customers, relevant products per customer, sorted relevant keys) of ``list_name``: every
        product bought in the window for ``next_basket``, the first-time ones for ``cross_sell``."""
        keep = self.new_to_customer if list_name == "cross_sell" else np.ones(self.rows.size, bool)
        customers, relevant = np.unique(self.rows[keep], return_counts=True)
        return customers, relevant, np.sort(self.keys[keep])

    def score(self, method: str, list_name: str, rows: np.ndarray, cols: np.ndarray,
              fallback_share: float = float("nan")) -> dict:
        """One evaluation row for lists given as (customer row, product index) in rank order per row."""
        rec = self.recommender
        customers, relevant, truth_keys = self.truth(list_name)
        hits = _hit_matrix(np.asarray(rows, np.int64), np.asarray(cols, np.int64), customers, truth_keys,
                           len(rec.products_), rec.k)
        metrics = ranking_metrics(hits, relevant)
        row = {"method": method, "list": list_name, "k": rec.k, "customers": int(customers.size)}
        for name in _METRICS:
            row[name], row[f"{name}_low"], row[f"{name}_high"] = metric_summary(metrics[name].to_numpy())
        allowed = int(rec._allowed.sum())
        row.update(coverage=len(np.unique(cols)) / allowed if allowed else float("nan"),
                   fallback_share=fallback_share, cold_customers=self.cold_customers,
                   unseen_products=self.unseen_products, test_customers=self.test_customers,
                   train_end=pd.Timestamp(self.train_end), test_end=pd.Timestamp(self.test_end))
        return row


def _holdout_cutoff(as_of: Any, settings: RecommendSettings) -> dt.date:
    return _as_date(as_of) - dt.timedelta(days=settings.horizon_days)


def _no_training_data(cutoff: dt.date, exc: CannotCompute) -> CannotCompute:
    return CannotCompute(_("the test of the lists learns from purchases up to {date}, and {reason}").format(
        date=cutoff, reason=exc))


def temporal_holdout(lines: Any, as_of: Any, settings: RecommendSettings | None = None, *,
                     segments: pd.DataFrame | None = None, purchases: Any = None,
                     recommender: ProductRecommender | None = None) -> Holdout:
    """Fit on purchases up to ``as_of - horizon_days`` and collect what was bought in the days after.

    ``recommender``, when given, is that fit already made (:func:`recommendation_tables` makes it from the
    queries it shares with the final fit).

    Raises
    ------
    CannotCompute
        When nothing was bought before the cutoff, or no customer who had bought before it bought in
        the test window.
    """
    settings = settings or RecommendSettings()
    end = _as_date(as_of)
    cutoff = _holdout_cutoff(end, settings)
    rec = recommender
    if rec is None:
        try:
            rec = ProductRecommender.from_settings(settings).fit(lines, cutoff, segments=segments, purchases=purchases)
        except CannotCompute as exc:
            raise _no_training_data(cutoff, exc) from None
    import ibis

    if purchases is None:
        window = purchase_lines(lines, start=cutoff, end=end)
    else:  # the caller's purchases, up to as_of
        window = purchases.filter((purchases.day > ibis.literal(cutoff, type="date"))
                                  & (purchases.day <= ibis.literal(end, type="date")))
    test = window.select("customer_key", "product_id").distinct().to_pyarrow()
    n_products = len(rec.products_)
    ids = pa.array(rec.products_["product_id"].astype(str).tolist(), pa.string())
    rows = pc.index_in(test["customer_key"], value_set=rec.customers_).fill_null(-1).to_numpy().astype(np.int64)
    cols = pc.index_in(test["product_id"], value_set=ids).fill_null(-1).to_numpy().astype(np.int64)
    cold = int(len(pc.unique(test["customer_key"].filter(pa.array(rows < 0)))))
    unseen = int(len(pc.unique(test["product_id"].filter(pa.array(cols < 0)))))
    warm = rows >= 0
    rows, cols = rows[warm], cols[warm]
    scored = np.unique(rows)
    if 0 < settings.evaluation_customers < scored.size:
        # a random sample of the customers (fixed seed: the same data give the same figures); the intervals
        # are over the sampled customers, so they stay honest, and the cost stays flat as the data grows
        # drawn from the customers in key order: the engine returns rows in no fixed order
        keys = pc.take(rec.customers_, pa.array(scored)).to_numpy(zero_copy_only=False)
        in_key_order = scored[np.argsort(keys, kind="stable")]
        chosen = np.sort(np.random.default_rng(0).choice(in_key_order, settings.evaluation_customers, replace=False))
        keep = _contains(chosen, rows)
        rows, cols = rows[keep], cols[keep]
    if rows.size == 0:
        raise CannotCompute(_("no customer who bought up to {cutoff} bought anything in the {days} days to {end}: "
                              "there is nothing to test the lists against.").format(
            cutoff=cutoff, days=settings.horizon_days, end=end))
    keys = np.where(cols >= 0, rows * n_products + cols, -1 - np.arange(rows.size))
    new = np.ones(rows.size, dtype=bool)
    seen = cols >= 0
    new[seen] = ~_contains(rec._bought_keys(np.unique(rows)), keys[seen])
    return Holdout(rec, rows, keys, new, cold, unseen, int(len(pc.unique(test["customer_key"]))), cutoff, end)


def evaluate_recommendations(lines: Any, as_of: Any, settings: RecommendSettings | None = None, *,
                             segments: pd.DataFrame | None = None, holdout: Holdout | None = None,
                             purchases: Any = None, recommender: ProductRecommender | None = None) -> pd.DataFrame:
    """Score both lists and the baselines on a :func:`temporal_holdout`.

    ``next_basket`` is scored against all products each customer bought in the test window, beside
    buy-again and popularity; ``cross_sell`` against the products they bought there for the first time,
    beside popularity restricted to never-bought products. Returns one row per (method, list) with
    :data:`EVALUATION_COLUMNS`; ``no_better_than_popularity`` is True when the method's NDCG interval
    overlaps the popularity baseline's on the same list ("no better than best-sellers").
    """
    holdout = holdout or temporal_holdout(lines, as_of, settings, segments=segments, purchases=purchases,
                                          recommender=recommender)
    rec = holdout.recommender
    n_products = len(rec.products_)
    table = []
    for list_name in LISTS:
        customers, _relevant, _keys = holdout.truth(list_name)
        if customers.size == 0:
            continue
        ours = rec._lists(list_name, customers)
        table.append(holdout.score(list_name, list_name, ours["row"], ours["col"],
                                   float(np.isin(ours["reason"], (_R_SEGMENT, _R_POPULAR)).mean())))
        if list_name == "next_basket":
            r, c = rec.buy_again(customers)
            filled = ~_contains(rec._bought_keys(customers), r * n_products + c)
            table.append(holdout.score("buy_again", list_name, r, c, float(filled.mean())))
        r, c = rec.popular(customers, exclude_bought=list_name == "cross_sell")
        table.append(holdout.score("popularity", list_name, r, c, 1.0))
    return flag_no_better_than_popularity(pd.DataFrame(table))


def flag_no_better_than_popularity(table: pd.DataFrame) -> pd.DataFrame:
    """Set ``no_better_than_popularity``: the method's NDCG interval reaches the popularity baseline's
    interval on the same list (or has no interval). Returns the table with :data:`EVALUATION_COLUMNS`."""
    out = table.copy()
    out["no_better_than_popularity"] = False
    for _list, group in out.groupby("list"):
        base = group[group["method"] == "popularity"]
        if base.empty:
            continue
        top = float(base["ndcg_high"].iloc[0])
        for idx, row in group.iterrows():
            if row["method"] != "popularity":
                low = float(row["ndcg_low"])
                out.loc[idx, "no_better_than_popularity"] = bool(np.isnan(low) or low <= top)
    return out[EVALUATION_COLUMNS].reset_index(drop=True)


def _write_arrow_chunks(engine: Any, name: str, chunks: Any) -> int:
    """Write Arrow tables one after the other as the run table ``name`` and return the rows written; like
    :meth:`crmlib.engine.Engine.write_table` (same compression, temporary name then rename), but the whole
    table never has to be in memory at once (a million customers' lists are ~2 GB as Arrow)."""
    import os

    import pyarrow.parquet as pq

    from crmlib.engine import PARQUET_COMPRESSION

    path = engine.table_path(name)
    tmp = path.with_suffix(".parquet.tmp")
    rows = 0
    writer = None
    try:
        for chunk in chunks:
            if writer is None:
                writer = pq.ParquetWriter(tmp, chunk.schema, **PARQUET_COMPRESSION)
            writer.write_table(chunk)
            rows += chunk.num_rows
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        tmp.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        return 0
    os.replace(tmp, path)
    return rows


class _ExampleChooser:
    """Picks each list's example customer while the lists are written (a query would read the written table
    twice more for it): the most own regular products (buy again) or the most different
    "bought with" products (cross-sell), then the most kinds of reason, then the lowest customer key."""

    def __init__(self, rec: ProductRecommender) -> None:
        self.rec = rec
        self.best: dict[str, tuple[int, int, str]] = {}

    def __call__(self, list_name: str, lists: dict[str, np.ndarray]) -> None:
        if lists["row"].size == 0:
            return
        rows, local = np.unique(lists["row"], return_inverse=True)
        reason = lists["reason"]
        if list_name == "next_basket":
            signal = np.bincount(local, weights=reason == _R_REPEAT, minlength=rows.size).astype(np.int64)
        else:  # distinct products named as a reason (none for a fallback slot)
            named = lists["product"] >= 0
            pairs = np.unique(local[named] * len(self.rec.products_) + lists["product"][named])
            signal = np.bincount(pairs // len(self.rec.products_), minlength=rows.size)
        kinds = np.unique(local * len(REASONS) + reason)
        mixed = np.bincount(kinds // len(REASONS), minlength=rows.size)
        top = np.flatnonzero(signal == signal.max())
        top = top[mixed[top] == mixed[top].max()]
        key = pc.min(pc.take(self.rec.customers_, pa.array(rows[top]))).as_py()
        found = (int(signal[top[0]]), int(mixed[top[0]]), key)
        held = self.best.get(list_name)
        if held is None or (found[0], found[1]) > (held[0], held[1]) or (found[:2] == held[:2] and key < held[2]):
            self.best[list_name] = found

    def keys(self) -> dict[str, str]:
        """Each list's chosen customer key."""
        return {name: best[2] for name, best in self.best.items()}


@dataclass
class RecommendationTables:
    """What :func:`recommendation_tables` wrote: the fitted recommender, the evaluation and the counts."""

    recommender: ProductRecommender
    evaluation: pd.DataFrame | Any
    rows: dict[str, int]
    seconds: dict[str, float]
    #: Each list's example customer (:class:`_ExampleChooser`), for :func:`_list_overview`.
    example_keys: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"RecommendationTables(rows={self.rows}, seconds={ {k: round(v, 1) for k, v in self.seconds.items()} })"


def recommendation_tables(engine: Any, as_of: Any, settings: RecommendSettings | None = None, *,
                          segments: pd.DataFrame | None = None, evaluate: bool = True,
                          lines: Any = None) -> RecommendationTables:
    """The whole recommendation step: evaluation on a holdout, then the lists on all data up to ``as_of``.

    Writes the run tables ``recommendations`` (:data:`RECOMMENDATION_COLUMNS`), ``also_bought``
    (:data:`ALSO_BOUGHT_COLUMNS`; product ids only, names are for pages) and ``rec_evaluation``
    (:data:`EVALUATION_COLUMNS`; when the data cannot support a holdout, the :class:`CannotCompute` is
    returned in ``evaluation`` and no evaluation table is written). The lists for activation always use
    every purchase up to ``as_of``; the holdout only measures.
    """
    import time

    settings = settings or RecommendSettings()
    lines = engine.table("order_lines") if lines is None else lines
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    # one scan of the lines for both fits and the test window
    purchases = engine.scratch("rec_purchases", purchase_lines(lines, end=as_of))
    seconds["purchases"] = time.perf_counter() - start
    try:
        return _tables(engine, lines, purchases, as_of, settings, segments, evaluate, seconds)
    finally:
        engine.drop("rec_purchases")


def _evaluation(queries: _FitQueries, lines: Any, as_of: Any, settings: RecommendSettings,
                segments: pd.DataFrame | None, purchases: Any) -> pd.DataFrame:
    """:func:`evaluate_recommendations` on the holdout fit of ``queries`` (its first date); the fit is let go
    of before the final one is made."""
    cutoff = queries.ends[0]
    try:
        train = queries.fit(ProductRecommender.from_settings(settings), 0, segments=segments)
    except CannotCompute as exc:
        raise _no_training_data(cutoff, exc) from None
    return evaluate_recommendations(lines, as_of, settings, segments=segments, purchases=purchases, recommender=train)


def _tables(engine: Any, lines: Any, purchases: Any, as_of: Any, settings: RecommendSettings,
            segments: pd.DataFrame | None, evaluate: bool, seconds: dict[str, float]) -> RecommendationTables:
    import time

    evaluation: pd.DataFrame | Any = None
    start = time.perf_counter()
    cutoff = _holdout_cutoff(as_of, settings)
    # the holdout's fit and the final one come from the same queries, each answering for both dates
    queries = _FitQueries(ProductRecommender.from_settings(settings), lines, [cutoff, as_of] if evaluate else [as_of],
                          purchases=purchases)
    seconds["fit"] = time.perf_counter() - start
    if evaluate:
        start = time.perf_counter()
        try:
            evaluation = _evaluation(queries, lines, as_of, settings, segments, purchases)
            engine.write_table("rec_evaluation", evaluation)
        except CannotCompute as exc:
            evaluation = exc
            engine.table_path("rec_evaluation").unlink(missing_ok=True)
        seconds["evaluation"] = time.perf_counter() - start
    start = time.perf_counter()
    rec = queries.fit(ProductRecommender.from_settings(settings), len(queries.ends) - 1, segments=segments)
    del queries
    seconds["fit"] += time.perf_counter() - start
    start = time.perf_counter()
    chooser = _ExampleChooser(rec)
    written = _write_arrow_chunks(engine, "recommendations", (chunk for name in LISTS
                                                              for chunk in rec.iter_recommendations(name, observe=chooser)))
    engine.write_table("also_bought", rec.also_bought_)
    seconds["lists"] = time.perf_counter() - start
    return RecommendationTables(rec, evaluation, {"recommendations": written,
                                                  "also_bought": len(rec.also_bought_)}, seconds, chooser.keys())


# -- display ----------------------------------------------------------------------------------------
def reason_text(reason: str, *, n: Any = None, days: Any = None, product: Any = None, segment: Any = None) -> str:
    """A stored reason (code + arguments) as a sentence in the run's language; ``product`` is the name
    to show (look it up from ``reason_product_id``), ``segment`` is translated as a segment name."""
    def whole(value: Any) -> Any:
        return int(value) if value is not None and not pd.isna(value) else ""

    return _(reason).format(n=whole(n), days=whole(days), product="" if product is None else product,
                            segment=_(str(segment)) if segment is not None and not pd.isna(segment) else "")


# -- the stage step and its report views --------------------------------------------------------------
#: Step names recorded with a warning (shown through :func:`_` on the page).
STEP_RECOMMEND = N_("product recommendations")
STEP_EVALUATE = N_("recommendation evaluation")
#: A buy-again list goes to a customer whose first product is due: at least this probability (before
#: the habit weight) that they buy it within the list's horizon.
DUE_PROBABILITY = 0.5
#: Audience files written per list (``audiences/recommendations_<list>.csv``): which customers and why.
AUDIENCE_LISTS = {"next_basket": N_("customers whose own regular product is due"),
                  "cross_sell": N_("customers with a personal cross-sell offer")}
_TABLES = ("recommendations", "also_bought", "rec_evaluation")


@dataclass
class RecommendationResult:
    """What the report cells show: the fitted recommender, the evaluation (or why not), the audiences."""

    recommender: ProductRecommender
    settings: RecommendSettings
    evaluation: pd.DataFrame | Any
    audiences: pd.DataFrame
    as_of: dt.date
    top_products: pd.DataFrame
    examples: pd.DataFrame

    def product_name(self, product_id: Any) -> str:
        """The name a page shows for ``product_id`` (the id when the catalogue has no name)."""
        return self._names().get(str(product_id), str(product_id))

    def _names(self) -> dict[str, str]:
        if not hasattr(self, "_name_map"):
            products = self.recommender.products_
            names = products["product_name"].where(products["product_name"].notna(), products["product_id"])
            self._name_map = dict(zip(products["product_id"].astype(str), names.astype(str)))
        return self._name_map

    def __repr__(self) -> str:
        return (f"RecommendationResult(as_of={self.as_of}, customers={self.recommender.n_customers_:,}, "
                f"audiences={self.audiences['written'].tolist() if len(self.audiences) else []})")


def _remove(engine: Any, names: tuple[str, ...] = _TABLES) -> None:
    # an --only run starts from a copy of the last run's tables: a stale table or audience must not pass
    # for this run's
    engine.remove_tables(*names)
    for list_name in AUDIENCE_LISTS:
        for suffix in (".parquet", ".csv"):
            (engine.run_dir / "audiences" / f"recommendations_{list_name}{suffix}").unlink(missing_ok=True)


def _audience_members(recs: Any) -> dict[str, pd.DataFrame]:
    """Per list, the customers to send it to and their products in rank order (ids), from the
    ``recommendations`` table (Ibis): the buy-again list goes to customers whose first product is one they
    bought at least twice and is due (:data:`DUE_PROBABILITY`), the cross-sell list to those whose first
    offer is personal (co-occurrence, not a fallback)."""
    first = recs.filter(recs["rank"] == 1)
    # the score is log(1 + n) * (1 - DUE_SHARE + DUE_SHARE * due) * fade: due >= DUE_PROBABILITY (and not
    # faded) is a score of at least this share of the habit weight; the co-occurrence term only adds
    habit = (first.reason_n.cast("float64") + 1).ln() * (1 - DUE_SHARE + DUE_SHARE * DUE_PROBABILITY)
    due = first.filter((first.list == "next_basket") & (first.reason == REASON_REPEAT) & (first.score >= habit))
    personal = first.filter((first.list == "cross_sell") & (first.reason == REASON_WITH))
    out = {}
    for list_name, chosen in (("next_basket", due), ("cross_sell", personal)):
        rows = recs.filter(recs.list == list_name)
        rows = rows.semi_join(chosen.select("customer_key"), "customer_key")
        out[list_name] = _wide_lists(rows.select("customer_key", "rank", "product_id").to_pyarrow())
    return out


def _wide_lists(long: pa.Table) -> pd.DataFrame:
    """``customer_key, product_1 .. product_<k>`` (customers in key order, one column per rank present) from
    one row per (customer, rank): what ``DataFrame.pivot`` gives, placed with Arrow instead (pivoting a few
    hundred thousand lists of text through pandas' unstack takes seconds)."""
    keys = pc.dictionary_encode(long["customer_key"]).combine_chunks()
    in_order = pc.sort_indices(keys.dictionary).to_numpy()
    row_of = np.empty(in_order.size, dtype=np.int64)
    row_of[in_order] = np.arange(in_order.size)
    rows = row_of[keys.indices.to_numpy()]
    rank = long["rank"].to_numpy()
    ranks = np.unique(rank)
    line = np.full((in_order.size, ranks.size), -1, dtype=np.int64)  # each cell's row of ``long``
    line[rows, np.searchsorted(ranks, rank)] = np.arange(rank.size)
    products = long["product_id"].combine_chunks()
    wide = {"customer_key": keys.dictionary.take(pa.array(in_order))}
    wide.update({f"product_{int(r)}": products.take(pa.array(line[:, j], mask=line[:, j] < 0))
                 for j, r in enumerate(ranks)})
    return pa.table(wide).to_pandas()


def write_recommendation_audiences(run_dir: Any, recs: Any, consent: pd.DataFrame | None) -> pd.DataFrame:
    """``audiences/recommendations_<list>.parquet`` and ``.csv``: the customers to send each list to
    (:func:`_audience_members`, from the ``recommendations`` table as Ibis) with their product ids in rank
    order; customers whose marketing consent is known to be False are left out. Returns the summary in the
    shape of :func:`crmlib.segmentation.audiences.write_audiences`."""
    from pathlib import Path

    from crmlib.report import write_people_csv

    out_dir = Path(run_dir) / "audiences"
    out_dir.mkdir(parents=True, exist_ok=True)
    opted_out = pa.array([], pa.string())
    if consent is not None and "consent_marketing" in consent.columns:
        said_no = consent["consent_marketing"].eq(False).fillna(False).astype(bool)
        opted_out = pa.array(consent.loc[said_no, "customer_key"].astype(str).unique(), pa.string())
    rows = []
    for list_name, members in _audience_members(recs).items():
        # Arrow's set look-up: pandas' isin on Arrow-backed text calls Python once per key
        keys = pa.array(members["customer_key"].astype(str), pa.string())
        excluded = pd.Series(pc.is_in(keys, value_set=opted_out).to_numpy(zero_copy_only=False), index=members.index)
        keep = members.loc[~excluded].astype({"customer_key": "string"}).sort_values("customer_key")
        path = out_dir / f"recommendations_{list_name}.parquet"
        keep.to_parquet(path, index=False)
        write_people_csv(keep, path.with_suffix(".csv"))
        rows.append({"audience": f"recommendations_{list_name}", "kind": "recommendations", "value": list_name,
                     "customers": len(members), "excluded_no_consent": int(excluded.sum()), "written": len(keep),
                     "path": str(path.relative_to(Path(run_dir)))})
    return pd.DataFrame(rows)


def _list_overview(recs: Any, example_keys: dict[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(products most often in the first three places of each list, with the share given for the
    customer's own reasons; one example list per list, without whose it is). ``example_keys``: each list's
    example customer, chosen while the lists were written (:class:`_ExampleChooser`)."""
    import ibis

    top3 = recs.filter(recs["rank"] <= 3)
    personal = top3.reason.isin([REASON_REPEAT, REASON_BOUGHT_ONCE, REASON_WITH])
    counts = top3.group_by(["list", "product_id"]).agg(customers=top3.count(),
                                                       personal=personal.sum().cast("int64"))
    counts = counts.mutate(place=ibis.row_number().over(
        ibis.window(group_by=counts.list, order_by=[ibis.desc(counts.customers),
                                                                  counts.product_id])))
    top = counts.filter(counts.place < 10).drop("place").order_by(["list", ibis.desc("customers")])
    examples = []
    for list_name in LISTS:
        rows = recs.filter(recs.list == list_name)
        chosen = rows.filter(rows.customer_key.isin([example_keys[list_name]] if list_name in example_keys else []))
        examples.append(chosen.order_by("rank").to_pandas().drop(columns="customer_key"))  # never whose it is
    return top.to_pandas(), pd.concat(examples, ignore_index=True)


def run_recommendations(engine: Any, settings: RecommendSettings, *, as_of: Any, stage: str,
                        segments: pd.DataFrame | None = None,
                        consent: pd.DataFrame | None = None) -> RecommendationResult | Any | None:
    """The recommendation step of a stage: tables, evaluation and audiences, or why not.

    Returns None when the run has no ``order_lines`` table (no order-lines source: nothing to recommend
    from, and nothing is recorded as a problem); an :class:`~crmlib.status.Unavailable` when the lines
    cannot support a recommender (the reason is recorded); otherwise the result. An evaluation the data
    cannot support (too little history before the holdout window) is recorded as a warning and the lists
    are still written. ``consent`` (customer_key, consent_marketing) defaults to the run's customers table.
    """
    from crmlib.status import Unavailable, guard, record_warning

    if not engine.has_table("order_lines"):
        _remove(engine)
        return None
    result = guard(engine, stage, STEP_RECOMMEND,
                   lambda: recommendation_tables(engine, as_of, settings, segments=segments))
    if isinstance(result, Unavailable):
        _remove(engine)
        return result
    evaluation = result.evaluation
    if isinstance(evaluation, CannotCompute):
        record_warning(engine, stage, STEP_EVALUATE, str(evaluation))
        evaluation = Unavailable(STEP_EVALUATE, str(evaluation))
    recs = engine.table("recommendations")
    if consent is None and engine.has_table("customers") and "consent_marketing" in engine.table("customers").columns:
        consent = engine.to_pandas(engine.table("customers").select("customer_key", "consent_marketing"))
    audiences = write_recommendation_audiences(engine.run_dir, recs, consent)
    top_products, examples = _list_overview(recs, result.example_keys)
    return RecommendationResult(result.recommender, settings, evaluation, audiences, _as_date(as_of),
                                top_products, examples)


VERDICTS = {"baseline": N_("baseline"), "worse": N_("no better than best-sellers"),
            "better": N_("better than best-sellers")}


def _no_lines_note() -> Any:
    from IPython.display import Markdown

    from crmlib.report import escape_markdown

    return Markdown(escape_markdown(_("This run has no order lines (no source of kind order_lines), so there are "
                                      "no product recommendations.")))


def _row(evaluation: Any, method: str, list_name: str) -> pd.Series | None:
    if not isinstance(evaluation, pd.DataFrame):
        return None
    hit = evaluation[(evaluation["method"] == method) & (evaluation["list"] == list_name)]
    return None if hit.empty else hit.iloc[0]


def decision_sentences(result: RecommendationResult) -> list[str]:
    """The section's lead: whom to send which list, which products to bundle, and how far to trust them."""
    from crmlib.present import fmt_count, fmt_number, fmt_percent

    out = []
    written = result.audiences.set_index("value")["written"] if len(result.audiences) else pd.Series(dtype=int)
    due = int(written.get("next_basket", 0))
    if due:
        out.append(_("Send these {n} customers their buy-again list: each has a product they buy regularly that "
                     "is due within the next {days} days (audiences/recommendations_next_basket.csv, product ids "
                     "in rank order).").format(n=fmt_count(due), days=fmt_count(result.settings.horizon_days)))
    pairs = _bundle_pairs(result, 3)
    if len(pairs):
        out.append(_("These products sell together, so bundle them or show them side by side: {pairs}.").format(
            pairs=_("; ").join(_("{product} with {other} ({baskets} baskets together)").format(
                product=result.product_name(r.product_id), other=result.product_name(r.other_product_id),
                baskets=fmt_count(r.baskets)) for r in pairs.itertuples())))
    k = result.settings.k
    ours = _row(result.evaluation, "next_basket", "next_basket")
    buy_again = _row(result.evaluation, "buy_again", "next_basket")
    popular = _row(result.evaluation, "popularity", "next_basket")
    if ours is not None and buy_again is not None and popular is not None:
        out.append(_("Tested on the {days} days before the as-of date: the buy-again list held a product the customer "
                     "then bought for {hit} of {n} customers (NDCG@{k} {ndcg}; ranking by purchase count alone "
                     "{ba}; best-sellers {pop}).").format(
            days=fmt_count(result.settings.horizon_days), hit=fmt_percent(ours["hit_rate"]),
            n=fmt_count(ours["customers"]), k=k, ndcg=fmt_number(ours["ndcg"]), ba=fmt_number(buy_again["ndcg"]),
            pop=fmt_number(popular["ndcg"])))
    cross = _row(result.evaluation, "cross_sell", "cross_sell")
    cross_pop = _row(result.evaluation, "popularity", "cross_sell")
    if cross is not None and cross_pop is not None:
        if bool(cross["no_better_than_popularity"]):
            text = _("Cross-sell offers were no better than best-sellers in that test (NDCG@{k} {ours} against "
                     "{pop}): try them on part of the audience with a random holdout before relying on them.")
        else:
            text = _("Cross-sell offers beat best-sellers in that test (NDCG@{k} {ours} against {pop}).")
        out.append(text.format(k=k, ours=fmt_number(cross["ndcg"]), pop=fmt_number(cross_pop["ndcg"])))
    return out


def recommendations_summary(result: RecommendationResult | Any | None) -> Any:
    """The decisions the recommendations support, as a list of sentences; or why there are none."""
    import html

    from IPython.display import HTML

    if result is None:
        return _no_lines_note()
    if not isinstance(result, RecommendationResult):
        return result
    items = "".join(f"<li>{html.escape(s)}</li>" for s in decision_sentences(result))
    return HTML(f"<ul>{items}</ul>") if items else None


def _bundle_pairs(result: RecommendationResult, n: int) -> pd.DataFrame:
    """The ``n`` strongest pairs (cosine), each pair once."""
    pairs = result.recommender.also_bought_
    if pairs.empty:
        return pairs
    key = [tuple(sorted(p)) for p in zip(pairs["product_id"], pairs["other_product_id"])]
    unique = pairs.assign(_key=key).sort_values(["cosine", "baskets"], ascending=False).drop_duplicates("_key")
    return unique.head(n).drop(columns="_key")


def also_bought_view(result: RecommendationResult | Any | None, *, run_dir: Any = None) -> Any:
    """The strongest "bought together" pairs with support, confidence and lift (names, not ids)."""
    from crmlib.report import show

    if not isinstance(result, RecommendationResult):
        return _no_lines_note() if result is None else result
    pairs = _bundle_pairs(result, 15)
    frame = pd.DataFrame({
        _("product"): [result.product_name(p) for p in pairs["product_id"]],
        _("often bought with"): [result.product_name(p) for p in pairs["other_product_id"]],
        _("baskets together"): pairs["baskets"].to_numpy(),
        _("share of all baskets"): pairs["support"].to_numpy(),
        _("share of the product's baskets"): pairs["confidence"].to_numpy(),
        _("lift"): pairs["lift"].to_numpy(),
    })
    kinds = {_("baskets together"): "count", _("share of all baskets"): "percent",
             _("share of the product's baskets"): "percent", _("lift"): "ratio"}
    return show(frame, kinds=kinds, caption=_("Products bought together, strongest pairs first (cosine similarity; "
                                              "at least {n} baskets together). Lift favours rare products, so it "
                                              "is shown but not used to rank.").format(
                    n=result.settings.min_pair_baskets),
                download="also_bought" if run_dir else None, run_dir=run_dir)


def top_products_view(result: RecommendationResult | Any | None, list_name: str = "next_basket", *,
                      run_dir: Any = None) -> Any:
    """The products most often in the first three places of a list, and how many for a personal reason."""
    from crmlib.report import show

    if not isinstance(result, RecommendationResult):
        return _no_lines_note() if result is None else result
    top = result.top_products[result.top_products["list"] == list_name]
    products = result.recommender.products_.set_index("product_id")
    frame = pd.DataFrame({
        _("product"): [result.product_name(p) for p in top["product_id"]],
        _("category"): [products["category"].get(p) if p in products.index else None for p in top["product_id"]],
        _("customers (top 3 of their list)"): top["customers"].to_numpy(),
        _("for a personal reason"): (top["personal"] / top["customers"]).to_numpy(),
    })
    return show(frame, kinds={_("customers (top 3 of their list)"): "count", _("for a personal reason"): "percent"},
                caption=_("Products most often in the first three places of the {list} lists").format(
                    list=_(LISTS[list_name])),
                download=f"recommended_products_{list_name}" if run_dir else None, run_dir=run_dir)


def example_list_view(result: RecommendationResult | Any | None, list_name: str = "next_basket") -> Any:
    """One customer's list as the customer would get it (products and reasons; whose it is is not shown)."""
    from crmlib.report import show

    if not isinstance(result, RecommendationResult):
        return _no_lines_note() if result is None else result
    rows = result.examples[result.examples["list"] == list_name]
    reasons = [reason_text(r.reason, n=r.reason_n, days=r.reason_days, segment=r.reason_segment,
                           product=result.product_name(r.reason_product_id)
                           if isinstance(r.reason_product_id, str) else None)
               for r in rows.itertuples()]
    frame = pd.DataFrame({_("rank"): rows["rank"].to_numpy(),
                          _("product"): [result.product_name(p) for p in rows["product_id"]],
                          _("why"): reasons})
    return show(frame, kinds={_("rank"): "count"},
                caption=_("An example {list} list: one customer's products and the reason given for each").format(
                    list=_(LISTS[list_name])))


def evaluation_view(result: RecommendationResult | Any | None, *, run_dir: Any = None) -> Any:
    """Each list and baseline on the holdout: NDCG with its 95 % interval, hit rate, coverage, verdict."""
    from crmlib.present import fmt_count
    from crmlib.report import show

    if not isinstance(result, RecommendationResult):
        return _no_lines_note() if result is None else result
    table = result.evaluation
    if not isinstance(table, pd.DataFrame):
        return table
    k = result.settings.k
    verdict = np.where(table["method"] == "popularity", "baseline",
                       np.where(table["no_better_than_popularity"], "worse", "better"))
    frame = pd.DataFrame({
        _("method"): [_(METHODS.get(m, m)) for m in table["method"]],
        _("customers"): table["customers"].to_numpy(),
        _("NDCG@{k}").format(k=k): table["ndcg"].to_numpy(),
        _("95% interval, low"): table["ndcg_low"].to_numpy(),
        _("95% interval, high"): table["ndcg_high"].to_numpy(),
        _("hit rate@{k}").format(k=k): table["hit_rate"].to_numpy(),
        _("recall@{k}").format(k=k): table["recall"].to_numpy(),
        _("catalogue coverage"): table["coverage"].to_numpy(),
        _("slots filled by fallback"): table["fallback_share"].to_numpy(),
        _("verdict"): [_(VERDICTS[v]) for v in verdict],
    })
    kinds = {_("customers"): "count", _("NDCG@{k}").format(k=k): "number", _("95% interval, low"): "number",
             _("95% interval, high"): "number", _("hit rate@{k}").format(k=k): "percent",
             _("recall@{k}").format(k=k): "percent", _("catalogue coverage"): "percent",
             _("slots filled by fallback"): "percent"}
    first = table.iloc[0]
    caption = _("Lists built from purchases up to {train_end} and checked against what customers bought from then "
                "to {test_end}; {cold} customers with no earlier purchase and {unseen} products new in that window "
                "could not be scored by any method.").format(
        train_end=pd.Timestamp(first["train_end"]).date().isoformat(),
        test_end=pd.Timestamp(first["test_end"]).date().isoformat(),
        cold=fmt_count(first["cold_customers"]), unseen=fmt_count(first["unseen_products"]))
    return show(frame, kinds=kinds, caption=caption, download="rec_evaluation" if run_dir else None, run_dir=run_dir)


def audiences_view(result: RecommendationResult | Any | None, *, run_dir: Any = None) -> Any:
    """The recommendation audience files: who gets which list, left out for no consent, written."""
    from crmlib.report import show

    if not isinstance(result, RecommendationResult):
        return _no_lines_note() if result is None else result
    table = result.audiences
    frame = pd.DataFrame({
        _("file"): table["path"].str.replace(".parquet", ".csv", regex=False).to_numpy(),
        _("who"): [_(AUDIENCE_LISTS[v]) for v in table["value"]],
        _("customers"): table["customers"].to_numpy(),
        _("left out: no marketing consent"): table["excluded_no_consent"].to_numpy(),
        _("in the file"): table["written"].to_numpy(),
    })
    kinds = {_("customers"): "count", _("left out: no marketing consent"): "count", _("in the file"): "count"}
    return show(frame, kinds=kinds, caption=_("Recommendation audience files"))


def recommendation_findings(run_dir: Any) -> list[str]:
    """The stage page's key finding on recommendations (at most one sentence, so the page's other findings
    keep their place), from the run's files only (``audiences/recommendations_next_basket.parquet``,
    ``tables/rec_evaluation.parquet``): whom to send the buy-again list, how often such a list held what
    customers then bought, and a warning when cross-sell offers are no better than best-sellers."""
    from pathlib import Path

    from crmlib.present import fmt_count, fmt_number, fmt_percent
    from crmlib.report import read_run_table

    run_dir = Path(run_dir)
    due_file = run_dir / "audiences" / "recommendations_next_basket.parquet"
    n = len(pd.read_parquet(due_file, columns=["customer_key"])) if due_file.exists() else 0
    if not n:
        return []
    sentence = _("{n} customers have a regular product due now: send them their buy-again list "
                 "(audiences/recommendations_next_basket.csv).").format(n=fmt_count(n))
    evaluation = read_run_table(run_dir, "rec_evaluation")
    ours = _row(evaluation, "next_basket", "next_basket")
    if ours is not None:
        sentence = _("{sentence} In a test on past data it held a product they then bought for {hit} of "
                     "customers.").format(sentence=sentence, hit=fmt_percent(ours["hit_rate"]))
    cross = _row(evaluation, "cross_sell", "cross_sell")
    if cross is not None and bool(cross["no_better_than_popularity"]):
        sentence = _("{sentence} Cross-sell offers are no better than best-sellers (NDCG@{k} {ndcg}): test them "
                     "with a random holdout before a full send.").format(sentence=sentence, k=int(cross["k"]),
                                                                         ndcg=fmt_number(cross["ndcg"]))
    return [sentence]


def method_note(result: RecommendationResult | Any | None) -> str:
    """One "How this was computed" line (Markdown) for the recommendations; empty when they did not run."""
    from crmlib.present import fmt_percent
    from crmlib.report import escape_markdown

    if not isinstance(result, RecommendationResult):
        return ""
    cfg = result.settings
    text = _("bought = order lines with a positive amount up to {as_of}; buy again / next basket = the customer's "
             "own products, each scored by log(1 + orders) times a timing factor from 0.5 to 1, the chance that "
             "its next purchase falls in the next {days} days (Gamma-distributed gaps around the customer's usual "
             "interval), faded after three missed intervals; then products often bought with theirs; "
             "cross-sell = products never bought, "
             "by how often they share a basket with the customer's products, leaning {lean} toward popular "
             "products, then best-sellers of the customer's segment; pairs = baskets holding both (at least {pairs}; baskets over {cap} products keep their "
             "best-sellers), {neighbours} partners per product ranked by cosine similarity; {k} products per list. "
             "Test: the same lists learnt from purchases before the last {days} days, scored on what was bought "
             "in them; 95% intervals = 1.96 standard errors over customers.").format(
        as_of=result.as_of.isoformat(), days=cfg.horizon_days, pairs=cfg.min_pair_baskets, cap=cfg.max_basket_size,
        neighbours=cfg.neighbours, k=cfg.k, lean=fmt_percent(CROSS_SELL_POPULARITY, digits=0))
    return f"- **{escape_markdown(_(STEP_RECOMMEND))}**: {escape_markdown(text)}"
