"""Orders: BG/NBD purchases, Gamma-Gamma amounts, refunds and dirty rows of the two order files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ._common import (DAY, SOURCE_FILES, WEEK, _EPOCH_END, _EPOCH_START, _amount_str, _fmt_ts, _ids, _mask,
                      _replace)

BGNBD = {"r": 0.9, "alpha": 2.6, "a": 1.3, "b": 12.0}
GAMMA_GAMMA = {"p": 5.0, "q": 4.0, "gamma": 180.0}


NEVER_BUYER_SHARE = 0.10
DIRTY_RATES = {  # fraction of clean order rows per file
    "duplicate_exact": 0.004, "duplicate_id_conflict": 0.001, "bad_date": 0.0015,
    "bad_amount": 0.0015, "future_date": 0.001, "missing_customer_id": 0.002,
    "repeat_without_id": 0.001,  # store_pos only: identical rows without receipt number
}
DIRTY_REASONS = ["", "duplicate_exact", "duplicate_id_conflict", "bad_date", "bad_amount",
                 "future_date", "missing_customer_id", "repeat_without_id"]
_R = {name: code for code, name in enumerate(DIRTY_REASONS)}
REFUND_RATE = {"eshop_orders": 0.03, "store_pos": 0.015}


# ----------------------------------------------------------------------------- purchases
def _simulate_purchases(n: int, buyer: np.ndarray, rng: np.random.Generator) -> dict:
    """BG/NBD: Poisson purchasing (rate lambda per week) while alive; after every purchase the
    customer drops out with probability p. Spend per purchase Gamma(p, nu), nu ~ Gamma(q, gamma)."""
    g = BGNBD
    lam = np.minimum(rng.gamma(g["r"], 1.0 / g["alpha"], n), 3.0)
    drop = rng.beta(g["a"], g["b"], n)
    horizon = _EPOCH_END - _EPOCH_START
    frac = rng.beta(0.8, 1.3, n) * 1.08
    t0 = (_EPOCH_START + frac * horizon).astype(np.int64)
    t0 = np.where(buyer, t0, np.iinfo(np.int64).max // 4)
    active = t0 < _EPOCH_END
    weeks = np.where(active, (_EPOCH_END - t0) / WEEK, 0.0)
    max_purchases = rng.geometric(drop)  # purchases made before dropping out (incl. the first)
    arrivals = rng.poisson(lam * weeks)
    repeats = np.where(active, np.minimum(arrivals, max_purchases - 1), 0)
    # first `repeats` order statistics of `arrivals` uniforms on [0, weeks] via exponential spacings
    owner = np.repeat(np.arange(n), repeats)
    csum = np.cumsum(rng.exponential(1.0, int(repeats.sum())))
    cz = np.r_[0.0, csum]
    group_end = np.cumsum(repeats)
    before = cz[group_end - repeats]
    s_j = csum - np.repeat(before, repeats)
    s_n = cz[group_end] - before
    rest = rng.gamma(np.maximum(arrivals - repeats + 1, 1).astype(float), 1.0)
    scale = s_n + rest
    rep_t = t0[owner] + (s_j / scale[owner] * weeks[owner] * WEEK).astype(np.int64)
    first_owner = np.flatnonzero(active)
    o_person = np.r_[first_owner, owner]
    o_ts = np.r_[t0[first_owner], rep_t]
    gg = GAMMA_GAMMA
    nu = rng.gamma(gg["q"], 1.0 / gg["gamma"], n)
    return {"lam": lam, "drop": drop, "t0": t0, "max_purchases": max_purchases, "nu": nu,
            "alive_at_end": active & (max_purchases - 1 > repeats),
            "person": o_person.astype(np.int64), "ts": o_ts}


def _spend_amount(nu: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.maximum(np.round(rng.gamma(GAMMA_GAMMA["p"], 1.0 / nu), 2), 1.0)


# ----------------------------------------------------------------------------- orders files
def _build_order_file(name: str, persons: np.ndarray, ts: np.ndarray, amount: np.ndarray,
                      kind: np.ndarray, ids: np.ndarray, rng: np.random.Generator) -> dict:
    # ids: contact-record index (into rec["sid_pa"]) of each sale
    """Add refunds, then dirty rows; returns per-output-row arrays in file order.

    Inputs are the clean sales sorted by time. Sales are numbered in time order (the order id);
    a refund row's id is ``<sale id>-R`` and its ``refund_of`` is the sale id.
    """
    m = len(ts)
    is_ref = rng.random(m) < REFUND_RATE[name]
    r_ts = ts[is_ref] + rng.integers(DAY, 20 * DAY, is_ref.sum())
    ok = r_ts < _EPOCH_END
    ref_src = np.flatnonzero(is_ref)[ok]
    r_ts = r_ts[ok]
    full = rng.random(len(ref_src)) < 0.7
    r_amount = -np.where(full, amount[ref_src],
                         np.round(amount[ref_src] * rng.uniform(0.2, 0.8, len(ref_src)), 2))
    base_src = np.r_[np.arange(m), ref_src]
    base_ts = np.r_[ts, r_ts]
    base_amount = np.r_[amount, r_amount]
    base_refund = np.r_[np.zeros(m, bool), np.ones(len(ref_src), bool)]
    order = np.argsort(base_ts, kind="stable")
    base_src, base_ts, base_amount, base_refund = (base_src[order], base_ts[order],
                                                   base_amount[order], base_refund[order])
    nb = len(base_src)
    # sales are already in time order: their index is their number (order id)

    r = DIRTY_RATES

    def pick(rate: float, pool: np.ndarray) -> np.ndarray:
        k = min(len(pool), max(1, int(round(rate * nb))))
        return np.sort(rng.choice(pool, size=k, replace=False))

    sales = np.flatnonzero(~base_refund)
    no_id = np.zeros(nb, dtype=bool)
    repeat_src = np.zeros(0, dtype=np.int64)
    if name == "store_pos":  # receipts without number: never one that a refund points at
        refunded = np.zeros(m, dtype=bool)
        refunded[ref_src] = True
        repeat_src = pick(r["repeat_without_id"], sales[~refunded[base_src[sales]]])
        no_id[repeat_src] = True
    dup_src = pick(r["duplicate_exact"], np.flatnonzero(~no_id))
    conflict_src = pick(r["duplicate_id_conflict"], np.flatnonzero(~no_id & ~base_refund))
    out_b = np.r_[np.arange(nb), dup_src, conflict_src, repeat_src]
    reason = np.zeros(len(out_b), dtype=np.int8)  # codes into DIRTY_REASONS
    n1, n2 = nb + len(dup_src), nb + len(dup_src) + len(conflict_src)
    reason[nb:n1] = _R["duplicate_exact"]
    reason[n1:n2] = _R["duplicate_id_conflict"]
    reason[n2:] = _R["repeat_without_id"]
    reason[repeat_src] = _R["repeat_without_id"]
    out_ts = base_ts[out_b].copy()
    out_amount = base_amount[out_b].copy()
    ci = np.arange(n1, n2)
    out_amount[ci] = np.round(out_amount[ci] * rng.choice([0.5, 0.9, 1.1, 2.0], len(ci)), 2)
    out_ts[ci] = out_ts[ci] + rng.integers(60, 3 * DAY, len(ci))
    # in-place corruptions of sale rows that have no copy
    free = np.zeros(nb, dtype=bool)
    free[sales] = True
    free[np.r_[dup_src, conflict_src, repeat_src]] = False
    marks = {}
    for what in ("bad_date", "bad_amount", "future_date", "missing_customer_id"):
        marks[what] = pick(r[what], np.flatnonzero(free))
        free[marks[what]] = False
        reason[marks[what]] = _R[what]
    shown_ts = out_ts.copy()
    fut = marks["future_date"]
    shown_ts[fut] = _EPOCH_END + rng.integers(DAY, 400 * DAY, len(fut))
    final = np.argsort(shown_ts, kind="stable")  # rows with bad dates stay at their true place
    ob = out_b[final].astype(np.int32)
    src_row = base_src[ob].astype(np.int32)
    return {
        "reason": reason[final], "shown_ts": shown_ts[final], "true_ts": out_ts[final],
        "amount": out_amount[final], "refund": base_refund[ob], "order_no": src_row,
        "no_id": no_id[ob], "person": persons[src_row], "rec": ids[src_row],
        "kind": kind[src_row], "src_row": src_row, "base_row": ob, "base_amount": base_amount,
        # one entry per distinct order (sale or refund), for the order lines
        "base_src": base_src, "base_ts": base_ts, "base_refund": base_refund,
        "base_person": persons[base_src],
    }


def _format_orders(name: str, o: dict, extra: dict, sid_pa: pa.Array, out: Path,
                   rng: np.random.Generator) -> int:
    n_out = len(o["shown_ts"])
    reason = o["reason"]
    bad_dates = np.array(["2025-13-45 25:61:00", "昨天", "not a date", "00/00/0000",
                          "2025-02-30 10:00:00"], dtype=object)
    bad_amounts = np.array(["12,5O", "N/A", "--", "abc", "¥ ", "1.2.3"], dtype=object)
    if name == "eshop_orders":
        ts_fmt, prefix = "%Y-%m-%d %H:%M:%S", "EO"
    else:
        ts_fmt, prefix = "%Y/%m/%d %H:%M", "RC"
    writer = None
    chunk = 1_000_000
    path = out / SOURCE_FILES[name]
    for lo in range(0, n_out, chunk):
        sl = slice(lo, min(lo + chunk, n_out))
        k = sl.stop - sl.start
        rs = reason[sl]
        ref = o["refund"][sl]
        sale_id = _ids(prefix, 100_000_001 + o["order_no"][sl], 9)
        oid = pc.if_else(pa.array(ref), pc.binary_join_element_wise(sale_id, "-R", ""), sale_id)
        oid = _mask(oid, o["no_id"][sl])
        refund_of = _mask(sale_id, ~ref)
        ts = _fmt_ts(o["shown_ts"][sl], ts_fmt)
        bd = rs == _R["bad_date"]
        ts = _replace(ts, bd, bad_dates[rng.integers(0, len(bad_dates), bd.sum())])
        amt = _amount_str(o["amount"][sl])
        ba = rs == _R["bad_amount"]
        amt = _replace(amt, ba, bad_amounts[rng.integers(0, len(bad_amounts), ba.sum())])
        cid = sid_pa.take(pa.array(o["rec"][sl], mask=rs == _R["missing_customer_id"]))
        status = pa.array(np.where(ref, "refund", "completed"), pa.string())
        items = pa.array(extra["items"][sl])
        if name == "eshop_orders":
            tbl = pa.table({"order_id": oid, "account_id": cid, "order_ts": ts, "amount": amt,
                            "currency": pa.array(np.full(k, "CNY"), pa.string()),
                            "channel": pa.array(extra["channel"][sl], pa.string()),
                            "status": status, "items": items, "refund_of": refund_of})
        else:
            tbl = pa.table({"receipt_no": oid, "card_no": cid,
                            "store_id": _ids("ST", extra["store"][sl] + 1, 3),
                            "txn_time": ts, "amount": amt, "items": items,
                            "payment": pa.array(extra["payment"][sl], pa.string()),
                            "channel": pa.array(np.full(k, "store"), pa.string()),
                            "status": status, "refund_of": refund_of})
        if writer is None:
            writer = pacsv.CSVWriter(path, tbl.schema, write_options=pacsv.WriteOptions(
                quoting_style="needed", batch_size=65_536))
        writer.write_table(tbl)
    if writer is not None:
        writer.close()
    return n_out
