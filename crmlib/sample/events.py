"""Web and app events: purchase sessions, landing sessions from clicks, anonymous browsing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ._common import (SOURCE_FILES, _EPOCH_END, _EPOCH_START, _ids, _person_ids, _ts_array,
                      _write_chunked)
from .marketing import CAMPAIGNS, CHANNELS, _PAID_CHANNEL_CODES, _TT, _hex_ids

EVENT_TYPES = ["page_view", "product_view", "add_to_cart", "login", "checkout", "purchase"]
PAGES = ["/", "/cart", "/login", "/checkout", "/order/success"]
_PAGE_PRODUCT, _PAGE_LANDING = 5, 6


def _write_events(out: Path, truth_dir: Path, people: dict, rec: dict, tp: dict, online: dict,
                  rng: np.random.Generator, paths: dict, rows: dict) -> None:
    """Web/app events. Rows are kept as integer codes and turned into text chunk by chunk."""
    cookie_of = tp["cookie_of"]
    ck_id, ck_person, ck_device = tp["ck_id"], tp["ck_person"], tp["ck_device"]
    camp_names = list(CAMPAIGNS)
    # columns: ts, event type, account record (-1: not logged in), cookie, page code, sku,
    # campaign code (-1: no utm), session
    parts: list[tuple] = []
    n_sessions = 0

    def add(ts, etype, acct, cookie, page, sku, camp, session):
        k = len(ts)
        parts.append((np.asarray(ts, np.int64), np.full(k, etype, np.int8), np.asarray(acct, np.int32),
                      np.asarray(cookie, np.int32), np.full(k, page, np.int8) if np.isscalar(page) else page,
                      np.asarray(sku, np.int32) if not np.isscalar(sku) else np.full(k, sku, np.int32),
                      np.asarray(camp, np.int16) if not np.isscalar(camp) else np.full(k, camp, np.int16),
                      np.asarray(session, np.int32)))

    def skus(k: int) -> np.ndarray:
        return rng.integers(10000, 99999, k)

    # 1) purchase sessions for 12 % of the clean online sales: anonymous until the login
    ok = (online["reason"] == 0) & ~online["refund"]
    idx = np.flatnonzero(ok & (rng.random(len(ok)) < 0.12))
    k = len(idx)
    person = online["person"][idx]
    acct = online["acct_rec"][idx]
    cookie = cookie_of(person)
    end = online["true_ts"][idx]
    sess = n_sessions + np.arange(k)
    n_sessions += k
    none = np.full(k, -1)
    add(end - rng.integers(600, 2400, k), 0, none, cookie, 0, 0, -1, sess)
    add(end - rng.integers(300, 600, k), 1, none, cookie, _PAGE_PRODUCT, skus(k), -1, sess)
    add(end - 240, 2, none, cookie, 1, 0, -1, sess)
    add(end - 180, 3, acct, cookie, 2, 0, -1, sess)
    add(end - 120, 4, acct, cookie, 3, 0, -1, sess)
    add(end, 5, acct, cookie, 4, 0, -1, sess)

    # 2) landing sessions from clicks (utm tagged); e-mail / sms / push links carry the user id
    clicks = np.flatnonzero((tp["type"] == _TT["click"]) & (rng.random(len(tp["ts"])) < 0.6))
    k2 = len(clicks)
    person2 = tp["person"][clicks]
    cookie2 = tp["cookie"][clicks]
    camp2 = tp["campaign"][clicks].astype(np.int16)  # the same codes: positions in CAMPAIGNS
    owned = ~np.isin(tp["channel"][clicks], _PAID_CHANNEL_CODES)
    acct2 = np.where(owned, rec["eshop_of"][person2], -1)
    start2 = tp["ts"][clicks] + rng.integers(2, 30, k2)
    sess2 = n_sessions + np.arange(k2)
    n_sessions += k2
    add(start2, 0, acct2, cookie2, _PAGE_LANDING, 0, camp2, sess2)
    pv = rng.random(k2) < 0.6
    pv_ts = start2[pv] + rng.integers(30, 300, pv.sum())
    add(pv_ts, 1, acct2[pv], cookie2[pv], _PAGE_PRODUCT, skus(pv.sum()), camp2[pv], sess2[pv])
    atc = rng.random(pv.sum()) < 0.3
    add(pv_ts[atc] + rng.integers(20, 200, atc.sum()), 2, acct2[pv][atc], cookie2[pv][atc], 1, 0,
        camp2[pv][atc], sess2[pv][atc])

    # 3) anonymous browsing of known persons (stitched through a later login on the same cookie)
    ep = np.flatnonzero(rec["eshop_of"] >= 0)
    k3 = int(0.6 * len(ep))
    person3 = ep[rng.integers(0, len(ep), k3)]
    lo = np.maximum(rec["signup"][rec["eshop_of"][person3]], _EPOCH_START)
    start3 = lo + (rng.random(k3) * (_EPOCH_END - 3600 - lo)).astype(np.int64)
    cookie3 = cookie_of(person3)
    sess3 = n_sessions + np.arange(k3)
    n_sessions += k3
    add(start3, 0, np.full(k3, -1), cookie3, 0, 0, -1, sess3)
    add(start3 + rng.integers(20, 400, k3), 1, np.full(k3, -1), cookie3, _PAGE_PRODUCT, skus(k3), -1, sess3)

    # 4) visitors who are nobody's customer
    k4 = max(1, int(0.15 * n_sessions))
    noise_ck = _hex_ids("ck_", rng, max(1, k4 // 2))
    noise_dev = np.where(rng.random(len(noise_ck)) < 0.6, "mobile_web", "desktop").astype(object)
    which = len(ck_id) + rng.integers(0, len(noise_ck), k4)
    start4 = _EPOCH_START + rng.integers(0, _EPOCH_END - _EPOCH_START - 3600, k4)
    sess4 = n_sessions + np.arange(k4)
    add(start4, 0, np.full(k4, -1), which, 0, 0, -1, sess4)

    ts, etype, acct, cookie, page, sku, camp, session = (np.concatenate(c) for c in zip(*parts))
    parts.clear()
    order = np.lexsort((session, ts))
    n_ev = len(order)

    v_etype = pa.array(EVENT_TYPES, pa.string())
    v_page = pa.array(PAGES, pa.string())
    v_sid = rec["sid_pa"]
    v_ck = pa.array(np.r_[ck_id, noise_ck], pa.string())
    v_dev = pa.array(np.r_[ck_device, noise_dev], pa.string())
    v_camp = pa.array(camp_names, pa.string())
    v_landing = pa.array(["/promo/" + c.lower() for c in camp_names], pa.string())
    camp_channel = [CAMPAIGNS[c][0] for c in camp_names]
    v_utm_source = pa.array([CHANNELS[ch]["utm"][0] for ch in camp_channel], pa.string())
    v_utm_medium = pa.array([CHANNELS[ch]["utm"][1] for ch in camp_channel], pa.string())

    def take(vocab_arr: pa.Array, codes: np.ndarray) -> pa.Array:
        return vocab_arr.take(pa.array(codes, mask=codes < 0))

    def build(sl: slice) -> pa.Table:
        ix = order[sl]
        pg, cp, sk = page[ix].astype(np.int64), camp[ix].astype(np.int64), sku[ix]
        product = pc.binary_join_element_wise("/product/SKU", pc.cast(pa.array(sk), pa.string()), "")
        page_txt = pc.if_else(pa.array(pg == _PAGE_PRODUCT), product,
                              pc.if_else(pa.array(pg == _PAGE_LANDING), take(v_landing, cp),
                                         take(v_page, np.where(pg < 5, pg, -1))))
        return pa.table({
            "event_ts": _ts_array(ts[ix]).cast(pa.timestamp("us")),
            "event_type": take(v_etype, etype[ix].astype(np.int64)),
            "source_customer_id": take(v_sid, acct[ix]),
            "anonymous_id": take(v_ck, cookie[ix]),
            "session_id": _ids("s", session[ix] + 1, 9),
            "page": page_txt,
            "utm_source": take(v_utm_source, cp),
            "utm_medium": take(v_utm_medium, cp),
            "utm_campaign": take(v_camp, cp),
            "device": take(v_dev, cookie[ix]),
        })

    paths["web_events"] = out / SOURCE_FILES["web_events"]
    _write_chunked(paths["web_events"], n_ev, build, kind="parquet")
    rows["web_events"] = n_ev
    stitched = np.zeros(len(ck_id), dtype=bool)
    known = (cookie < len(ck_id)) & (acct >= 0)
    stitched[cookie[known]] = True
    pq.write_table(pa.table({
        "anonymous_id": pa.array(ck_id, pa.string()),
        "person_id": _person_ids(ck_person),
        "device": pa.array(ck_device, pa.string()),
        "stitched_in_events": pa.array(stitched),
    }), truth_dir / "cookies.parquet")
    _write_funnel_truth(truth_dir, etype, session, cookie, np.r_[ck_device, noise_dev])


FUNNEL_STEPS = ["page_view", "product_view", "add_to_cart", "checkout", "purchase"]


def _write_funnel_truth(truth_dir: Path, etype: np.ndarray, session: np.ndarray, cookie: np.ndarray,
                        cookie_device: np.ndarray) -> None:
    """The funnel as generated: the session kinds' step rates (no device plays a part) and the counts."""
    n_sessions = int(session.max()) + 1 if len(session) else 0
    devices, device_of_cookie = np.unique(cookie_device.astype(str), return_inverse=True)
    session_device = np.zeros(n_sessions, dtype=np.int64)
    session_device[session] = device_of_cookie[cookie]
    reached = {str(dev): {} for dev in devices}
    for step in FUNNEL_STEPS:
        has_step = np.zeros(n_sessions, dtype=bool)
        has_step[session[etype == EVENT_TYPES.index(step)]] = True
        counts = np.bincount(session_device[has_step], minlength=len(devices))
        for d, dev in enumerate(devices):
            reached[str(dev)][step] = int(counts[d])
    (truth_dir / "funnel.json").write_text(json.dumps({
        "steps": FUNNEL_STEPS,
        "definition": "Sessions (session_id) of web_events.parquet. Within a session the steps are in "
                      "time order, each at a distinct second, and a session reaches a step only after "
                      "the ones before it. Every purchase event is one clean e-shop sale (same account "
                      "id, event_ts = its true order_ts); login sits between add_to_cart and checkout. "
                      "The step rates depend on the kind of session only, not on the device: "
                      "there is NO planted device difference, and no session drops out between "
                      "checkout and purchase. A per-device difference in the counts below comes "
                      "from the mix of session kinds on each device.",
        "session_kinds": {
            "purchase": {"share_of_clean_online_sales": 0.12,
                         "step_rates": {"product_view": 1.0, "add_to_cart": 1.0, "checkout": 1.0,
                                        "purchase": 1.0}},
            "landing_from_click": {"share_of_clicks": 0.6, "utm_tagged": True,
                                   "step_rates": {"product_view": 0.6, "add_to_cart": 0.3,
                                                  "checkout": 0.0, "purchase": 0.0}},
            "anonymous_browsing": {"step_rates": {"product_view": 1.0, "add_to_cart": 0.0,
                                                  "checkout": 0.0, "purchase": 0.0}},
            "visitor_not_a_customer": {"step_rates": {"product_view": 0.0, "add_to_cart": 0.0,
                                                      "checkout": 0.0, "purchase": 0.0}},
        },
        "planted_device_difference": None,
        "sessions_reaching_step_by_device": reached,
    }, indent=2, ensure_ascii=False), encoding="utf-8")
