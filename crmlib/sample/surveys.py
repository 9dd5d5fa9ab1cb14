"""Surveys: NPS, CSAT, a complaint category and a Chinese comment per response.

Respondents, times, NPS and CSAT are drawn from the surveys' original stream exactly as before
(so they are unchanged); the category and the comment come from a stream of their own
(``default_rng([seed, FEEDBACK_STREAM])``) and carry two planted effects, written to
``truth/feedback.json``:

- detractors (NPS <= 6) name delivery and price far more often than promoters
  (``CATEGORY_WEIGHTS`` by NPS group);
- lapsing customers (their last order is more than ``LAPSED_AFTER_DAYS`` before the as-of date, and
  the purchase model says they had dropped out: what an RFM analysis sees as At Risk or
  Hibernating) who are not promoters name delivery with probability ``LAPSING_DELIVERY_SHARE``, so most
  delivery complaints come from them.

The comment matches the category and the score group (``vocab.SURVEY_COMMENTS_BY_CATEGORY``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from . import vocab
from ._common import DAY, SOURCE_FILES, _EPOCH_END, _EPOCH_START, _fmt_ts, _write_csv

FEEDBACK_STREAM = 15  # default_rng([seed, 15]): a stream no other file draws from
NPS_GROUPS = ["detractor", "passive", "promoter"]
# category -> weight per NPS group (detractor, passive, promoter); categories as in vocab
CATEGORY_WEIGHTS: dict[str, tuple[float, float, float]] = {
    "delivery": (0.20, 0.08, 0.05),
    "product_quality": (0.20, 0.27, 0.40),
    "service": (0.20, 0.20, 0.30),
    "price": (0.30, 0.20, 0.05),
    "app": (0.10, 0.20, 0.15),
}
LAPSING_DELIVERY_SHARE = 0.8
LAPSED_AFTER_DAYS = 180  # no order in the last half year before the as-of date


def _write_surveys(out: Path, people: dict, rec: dict, purch: dict, rng: np.random.Generator,
                   paths: dict, rows: dict, seed: int = 0, truth_dir: Path | None = None) -> None:
    crm_persons = np.flatnonzero(rec["crm_of"] >= 0)
    resp = crm_persons[rng.random(len(crm_persons)) < 0.10]
    n_resp = 1 + (rng.random(len(resp)) < 0.2)
    person = np.repeat(resp, n_resp)
    k = len(person)
    signup = rec["signup"][rec["crm_of"][person]]
    lo = np.maximum(signup, _EPOCH_START)
    ts = lo + (rng.random(k) * (_EPOCH_END - lo)).astype(np.int64)
    # heavier buyers are happier
    z = (np.log(purch["lam"][person]) - np.log(purch["lam"]).mean()) / np.log(purch["lam"]).std()
    nps = np.clip(np.round(7.2 + 1.3 * z + rng.normal(0, 1.8, k)), 0, 10).astype(np.int64)
    csat = np.clip(np.round(1 + nps / 2.5 + rng.normal(0, 0.6, k)), 1, 5).astype(np.int64)
    group = np.select([nps <= 6, nps <= 8], [0, 1], 2)
    # the first versions drew comments here; the draws stay so that the missing scores below fall
    # on the same responses as in every published sample
    for s_, texts in vocab.SURVEY_COMMENTS.items():
        rng.integers(0, len(texts), (group == s_).sum())
    nps_col = pa.array(np.where(rng.random(k) < 0.05, None, nps).astype(object), pa.int64())
    csat_col = pa.array(np.where(rng.random(k) < 0.1, None, csat).astype(object), pa.int64())

    fb = np.random.default_rng([seed, FEEDBACK_STREAM])
    categories = list(CATEGORY_WEIGHTS)
    weights = np.array([CATEGORY_WEIGHTS[c] for c in categories])  # category x group
    cum = np.cumsum(weights / weights.sum(axis=0), axis=0)
    category = (fb.random(k)[None, :] > cum[:, group]).sum(axis=0)
    last_order = purch["last_order_ts"][person]
    lapsing = ((last_order > _EPOCH_START) & (last_order < _EPOCH_END - LAPSED_AFTER_DAYS * DAY)
               & ~purch["alive_at_end"][person])
    # a lapsing customer who still scores 9-10 is not the one the late parcels drove away
    to_delivery = lapsing & (group < 2) & (fb.random(k) < LAPSING_DELIVERY_SHARE)
    category[to_delivery] = categories.index("delivery")
    comment = np.empty(k, dtype=object)
    for g, g_name in enumerate(NPS_GROUPS):
        for c, c_name in enumerate(categories):
            texts = np.asarray(vocab.SURVEY_COMMENTS_BY_CATEGORY[g_name][c_name], dtype=object)
            hit = (group == g) & (category == c)
            comment[hit] = texts[fb.integers(0, len(texts), hit.sum())]
    comment[comment == ""] = None

    order = np.argsort(ts, kind="stable")
    tbl = pa.table({
        "source_customer_id": rec["sid_pa"].take(pa.array(rec["crm_of"][person][order])),
        "response_ts": _fmt_ts(ts[order], "%Y-%m-%d %H:%M:%S"),
        "nps_score": nps_col.take(pa.array(order)),
        "csat": csat_col.take(pa.array(order)),
        "category": pa.array(np.asarray(categories, dtype=object)[category][order], pa.string()),
        "comment": pa.array(comment[order], pa.string()),
    })
    paths["surveys"] = out / SOURCE_FILES["surveys"]
    _write_csv(tbl, paths["surveys"], delimiter="\t")
    rows["surveys"] = k
    if truth_dir is not None:
        _write_feedback_truth(truth_dir, seed, category, group, lapsing, categories)


def _write_feedback_truth(truth_dir: Path, seed: int, category: np.ndarray, group: np.ndarray,
                          lapsing: np.ndarray, categories: list[str]) -> None:
    """The planted feedback effects and what they produced in this sample (every response counted)."""
    delivery = category == categories.index("delivery")
    price = category == categories.index("price")
    realised = {
        "responses": int(len(category)), "lapsing_responses": int(lapsing.sum()),
        "delivery_complaints": int(delivery.sum()),
        "share_of_delivery_complaints_from_lapsing": float(lapsing[delivery].mean()) if delivery.any() else None,
        "share_of_other_categories_from_lapsing": float(lapsing[~delivery].mean()) if (~delivery).any() else None,
    }
    for g, g_name in enumerate(NPS_GROUPS):
        in_g = group == g
        realised[f"{g_name}_responses"] = int(in_g.sum())
        realised[f"{g_name}_delivery_or_price_share"] = (
            float((delivery | price)[in_g].mean()) if in_g.any() else None)
    (truth_dir / "feedback.json").write_text(json.dumps({
        "definition": "NPS groups from the true score (before 5 % of scores were blanked in the file): "
                      "detractor 0-6, passive 7-8, promoter 9-10. The category is drawn from "
                      "category_weights[category][group]; then the category of a lapsing respondent who is "
                      "not a promoter becomes 'delivery' with probability lapsing_delivery_share. Lapsing: the person's last real "
                      "order (orders.parquet, origin not refund, is_real_order) is more than "
                      f"lapsed_after_days ({LAPSED_AFTER_DAYS}) days before the as-of date and the person "
                      "had dropped out of the purchase model (persons.parquet: alive_at_as_of false). The comment is drawn "
                      "from the phrases of its group and category.",
        "stream": [seed, FEEDBACK_STREAM],
        "nps_groups": NPS_GROUPS,
        "category_weights": {c: dict(zip(NPS_GROUPS, w)) for c, w in CATEGORY_WEIGHTS.items()},
        "lapsing_delivery_share": LAPSING_DELIVERY_SHARE, "lapsed_after_days": LAPSED_AFTER_DAYS,
        "realised": realised,
    }, indent=2, ensure_ascii=False), encoding="utf-8")
