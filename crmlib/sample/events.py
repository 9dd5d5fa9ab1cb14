"""Web and app events: purchase sessions, landing sessions from clicks, anonymous browsing.

The abandoned sessions (carts and checkouts that end without a purchase, with the drop-off planted
per device and, a little, per utm source) come last, from a stream of their own
(``default_rng([seed, FUNNEL_STREAM])``) and with session ids after all older ones, so every older
event row and every other file stays exactly as it was.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ._common import (DAY, SOURCE_FILES, _EPOCH_END, _EPOCH_START, _ids, _person_ids, _time_of_day,
                      _ts_array, _write_chunked)
from .marketing import CAMPAIGNS, CHANNELS, _PAID_CHANNEL_CODES, _TT, _hex_ids

EVENT_TYPES = ["page_view", "product_view", "add_to_cart", "login", "checkout", "purchase"]
PAGES = ["/", "/cart", "/login", "/checkout", "/order/success"]
_PAGE_PRODUCT, _PAGE_LANDING = 5, 6

FUNNEL_STREAM = 16  # default_rng([seed, 16]): a stream no older file draws from
# planted per device, over ALL sessions of that device: of the sessions reaching checkout, the share
# that purchase; of those reaching add_to_cart, the share that reach checkout (mobile web loses most)
CHECKOUT_TO_PURCHASE = {"mobile_web": 0.55, "android_app": 0.68, "ios_app": 0.74, "desktop": 0.80}
CART_TO_CHECKOUT = {"mobile_web": 0.40, "android_app": 0.45, "ios_app": 0.50, "desktop": 0.45}
# utm source -> probability that a click WITHOUT a landing session still brings a session that puts
# a product in the cart and leaves (clicked links never reach checkout: see funnel.json)
CART_FROM_CLICK_BY_UTM_SOURCE = {"baidu": 0.06, "douyin": 0.03, "dsp": 0.02, "smzdm": 0.08, "edm": 0.05,
                                 "sms": 0.04, "wechat": 0.05}


def _write_events(out: Path, truth_dir: Path, people: dict, rec: dict, tp: dict, online: dict,
                  rng: np.random.Generator, paths: dict, rows: dict, *, seed: int) -> None:
    """Web/app events. Rows are kept as integer codes and turned into text chunk by chunk.

    ``rng`` draws the older session kinds; the abandoned sessions draw from
    ``default_rng([seed, FUNNEL_STREAM])`` after them (see :func:`_plant_abandoned_sessions`).
    """
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
    n_sessions += k4

    # 5) abandoned carts and checkouts, planted per device and utm source (own stream, new session ids)
    old = tuple(np.concatenate(c) for c in zip(*parts))
    parts.clear()
    parts.append(old)
    landed = np.zeros(len(tp["ts"]), dtype=bool)
    landed[clicks] = True
    planted = _plant_abandoned_sessions(add, old, n_sessions, np.random.default_rng([seed, FUNNEL_STREAM]),
                                        rec, tp, landed, np.r_[ck_device, noise_dev], ck_person)
    del old

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
    _write_funnel_truth(truth_dir, etype, session, cookie, camp, np.r_[ck_device, noise_dev], planted)


def _modal_account(cookie: np.ndarray, acct: np.ndarray, n_cookies: int) -> np.ndarray:
    """Per known cookie, the account it is seen with most often (-1: never with one).

    New logged-in rows use it, so each cookie's stitching vote keeps its winner (and
    truth/cookies.parquet's ``stitched_in_events`` its value).
    """
    known = (cookie < n_cookies) & (acct >= 0)
    pairs, counts = np.unique(np.c_[cookie[known], acct[known]], axis=0, return_counts=True)
    modal = np.full(n_cookies, -1, dtype=np.int64)
    if len(pairs):
        # per cookie by ascending count (a tie: the smaller account last), so each cookie's last row wins
        ranked = pairs[np.lexsort((-pairs[:, 1], counts, pairs[:, 0]))]
        last = np.r_[ranked[1:, 0] != ranked[:-1, 0], True]
        modal[ranked[last, 0]] = ranked[last, 1]
    return modal


def _plant_abandoned_sessions(add, old: tuple, first_session: int, rng: np.random.Generator, rec: dict,
                              tp: dict, landed: np.ndarray, cookie_device: np.ndarray,
                              ck_person: np.ndarray) -> dict:
    """Add sessions that stop at add_to_cart or checkout, so the funnel loses visitors where it should.

    Parameters
    ----------
    add : callable
        ``_write_events``' row collector (ts, event type, account, cookie, page, sku, campaign, session).
    old : tuple of numpy.ndarray
        The older event rows as integer codes, in ``add``'s column order.
    first_session : int
        The first free session number (all older sessions are below it).
    rng : numpy.random.Generator
        The funnel's own stream.
    rec, tp : dict
        Contact records and touchpoints as the generator holds them.
    landed : numpy.ndarray of bool
        Per touchpoint row, whether it already has a landing session.
    cookie_device : numpy.ndarray
        Device of every cookie code (known cookies first, then the visitors who are nobody's customer).
    ck_person : numpy.ndarray
        Person of every known cookie.

    Returns
    -------
    dict
        What was planted and drawn, for ``truth/funnel.json``.

    Notes
    -----
    Purchase sessions are fixed by the older stream, so the drop-off is planted by adding the
    sessions that fail: with P purchase sessions on a device and a planted rate p, round(P (1 - p) / p)
    sessions reach checkout and stop, so the file's rate P / (P + F) is p up to rounding (a random
    count would scatter the apps' few hundred sessions by several points, blurring the planted
    order of the devices); the same for add_to_cart -> checkout, counting the older sessions that
    already stop at the cart. Who, when and which product are random draws.
    Logged-in rows (login and checkout) use only cookies already seen with an account, and that
    account, so cookie stitching and ``truth/cookies.parquet`` do not change.
    """
    _ts, etype, acct, cookie, _page, _sku, _camp, session = old
    n_known = len(ck_person)
    modal = _modal_account(cookie, acct, n_known)
    step = {e: EVENT_TYPES.index(e) for e in ("page_view", "product_view", "add_to_cart", "checkout", "purchase")}
    next_session = first_session
    drawn: dict = {"cart_from_click": {}, "abandoned_checkout": {}, "abandoned_cart": {}}

    def skus(k: int) -> np.ndarray:
        return rng.integers(10000, 99999, k)

    # clicks without a landing session that come back as a cart: a little more often for some sources
    camp_names = list(CAMPAIGNS)
    utm_of_campaign = np.array([CHANNELS[CAMPAIGNS[c][0]]["utm"][0] for c in camp_names], dtype=object)
    click = (tp["type"] == _TT["click"]) & ~landed & (tp["campaign"] >= 0) & (tp["cookie"] >= 0)
    owned = ~np.isin(tp["channel"], _PAID_CHANNEL_CODES)
    # owned links (e-mail, sms, push) carry the account: only where the cookie already shows one
    click &= ~owned | (modal[np.clip(tp["cookie"], 0, n_known - 1)] >= 0)
    # per campaign code, so the touchpoints (tens of millions at 1M customers) are indexed, never compared
    rate_of_campaign = np.array([CART_FROM_CLICK_BY_UTM_SOURCE.get(u, 0.0) for u in utm_of_campaign])
    rate = np.where(click, rate_of_campaign[np.clip(tp["campaign"], 0, None)], 0.0)
    chosen = np.flatnonzero(rng.random(len(rate)) < rate)
    k = len(chosen)
    c_cookie = tp["cookie"][chosen]
    c_camp = tp["campaign"][chosen].astype(np.int16)
    c_acct = np.where(owned[chosen], modal[c_cookie], -1)
    c_start = tp["ts"][chosen] + rng.integers(2, 30, k)
    c_sess = next_session + np.arange(k)
    next_session += k
    c_pv = c_start + rng.integers(30, 300, k)
    add(c_start, step["page_view"], c_acct, c_cookie, _PAGE_LANDING, 0, c_camp, c_sess)
    add(c_pv, step["product_view"], c_acct, c_cookie, _PAGE_PRODUCT, skus(k), c_camp, c_sess)
    add(c_pv + rng.integers(20, 200, k), step["add_to_cart"], c_acct, c_cookie, 1, 0, c_camp, c_sess)
    for source in CART_FROM_CLICK_BY_UTM_SOURCE:
        drawn["cart_from_click"][source] = int((utm_of_campaign[c_camp] == source).sum())

    # per device: sessions reaching checkout / add_to_cart in the older rows and the clicks above
    n_old = int(session.max()) + 1 if len(session) else 0
    sess_device = np.full(n_old, -1, dtype=np.int64)
    devices = list(CHECKOUT_TO_PURCHASE)
    dev_code = np.array([devices.index(d) if d in devices else -1 for d in cookie_device])
    sess_device[session] = dev_code[cookie]
    reached_checkout = np.zeros(n_old, dtype=bool)
    reached_checkout[session[etype == step["checkout"]]] = True
    purchased = np.zeros(n_old, dtype=bool)
    purchased[session[etype == step["purchase"]]] = True
    in_cart = np.zeros(n_old, dtype=bool)
    in_cart[session[etype == step["add_to_cart"]]] = True
    click_device = dev_code[c_cookie]
    known_device = dev_code[:n_known]
    lo_of_person = np.maximum(rec["signup"][np.maximum(rec["eshop_of"], 0)], _EPOCH_START)

    for d, device in enumerate(devices):
        on_device = sess_device == d
        n_purchase = int((purchased & on_device).sum())
        stop_at_cart = int((in_cart & ~reached_checkout & on_device).sum()) + int((click_device == d).sum())
        logged = np.flatnonzero((known_device == d) & (modal[:n_known] >= 0))
        anyone = np.flatnonzero(known_device == d)
        p, q = CHECKOUT_TO_PURCHASE[device], CART_TO_CHECKOUT[device]
        n_checkout_stop = round(n_purchase * (1 - p) / p) if len(logged) else 0
        reach_checkout = n_purchase + n_checkout_stop
        n_cart_stop = max(round(reach_checkout * (1 - q) / q) - stop_at_cart, 0) if len(anyone) else 0
        drawn["abandoned_checkout"][device] = n_checkout_stop
        drawn["abandoned_cart"][device] = n_cart_stop
        for n_new, pool, checks_out in ((n_checkout_stop, logged, True), (n_cart_stop, anyone, False)):
            if not n_new:
                continue
            ck = pool[rng.integers(0, len(pool), n_new)]
            lo = np.minimum(lo_of_person[ck_person[ck]], _EPOCH_END - 7200)
            day = lo + (rng.random(n_new) * (_EPOCH_END - 3600 - lo)).astype(np.int64)
            # shopping hours of online orders (evening peak), not the uniform hours of idle browsing
            start = day - (day - _EPOCH_START) % DAY + _time_of_day(rng, n_new, store=False)
            start = np.clip(start, lo, _EPOCH_END - 3600)
            sess = next_session + np.arange(n_new)
            next_session += n_new
            anon = np.full(n_new, -1)
            pv = start + rng.integers(20, 400, n_new)
            cart = pv + rng.integers(20, 200, n_new)
            add(start, step["page_view"], anon, ck, 0, 0, -1, sess)
            add(pv, step["product_view"], anon, ck, _PAGE_PRODUCT, skus(n_new), -1, sess)
            add(cart, step["add_to_cart"], anon, ck, 1, 0, -1, sess)
            if checks_out:  # logged in, as in the purchase sessions: login, then checkout, then nothing
                add(cart + 60, EVENT_TYPES.index("login"), modal[ck], ck, 2, 0, -1, sess)
                add(cart + 120, step["checkout"], modal[ck], ck, 3, 0, -1, sess)
    return drawn


FUNNEL_STEPS = ["page_view", "product_view", "add_to_cart", "checkout", "purchase"]


def _sessions_reaching(etype: np.ndarray, session: np.ndarray, group_of_session: np.ndarray,
                       groups: list[str]) -> dict:
    """Per group (device or utm source), the number of sessions reaching each funnel step."""
    reached = {g: {} for g in groups}
    for step in FUNNEL_STEPS:
        has_step = np.zeros(len(group_of_session), dtype=bool)
        has_step[session[etype == EVENT_TYPES.index(step)]] = True
        counts = np.bincount(group_of_session[has_step & (group_of_session >= 0)], minlength=len(groups))
        for g, name in enumerate(groups):
            reached[name][step] = int(counts[g])
    return reached


def _write_funnel_truth(truth_dir: Path, etype: np.ndarray, session: np.ndarray, cookie: np.ndarray,
                        camp: np.ndarray, cookie_device: np.ndarray, drawn: dict) -> None:
    """The funnel as generated: the planted rates, the session kinds and the sessions reaching each step."""
    n_sessions = int(session.max()) + 1 if len(session) else 0
    devices, device_of_cookie = np.unique(cookie_device.astype(str), return_inverse=True)
    session_device = np.zeros(n_sessions, dtype=np.int64)
    session_device[session] = device_of_cookie[cookie]
    by_device = _sessions_reaching(etype, session, session_device, [str(d) for d in devices])
    utm_of_campaign = [CHANNELS[CAMPAIGNS[c][0]]["utm"][0] for c in CAMPAIGNS]
    sources = sorted(set(utm_of_campaign))
    session_source = np.full(n_sessions, -1, dtype=np.int64)
    tagged = camp >= 0
    session_source[session[tagged]] = np.array([sources.index(u) for u in utm_of_campaign])[camp[tagged]]
    by_source = _sessions_reaching(etype, session, session_source, sources)

    def rate(num: int, den: int) -> float | None:
        return round(num / den, 4) if den else None

    realised = {dev: {"checkout_to_purchase": rate(c["purchase"], c["checkout"]),
                      "add_to_cart_to_checkout": rate(c["checkout"], c["add_to_cart"])}
                for dev, c in by_device.items()}
    (truth_dir / "funnel.json").write_text(json.dumps({
        "steps": FUNNEL_STEPS,
        "definition": "Sessions (session_id) of web_events.parquet. Within a session the steps are in "
                      "time order, each at a distinct second, and a session reaches a step only after "
                      "the ones before it. Every purchase event is one clean e-shop sale (same account "
                      "id, event_ts = its true order_ts); login sits between add_to_cart and checkout. "
                      "Rates are over sessions: of the sessions of a device reaching a step, the share "
                      "reaching the next. The planted per-device rates hold over ALL sessions of the "
                      "device; realised_device_rates are measured from the file. The abandoned sessions "
                      "come from default_rng([seed, stream]); their number per device is set so that the "
                      "realised rates equal the planted ones up to rounding (who, when and which product "
                      "are random). utm-tagged sessions (from a click) never reach checkout. A funnel of "
                      "users (not sessions) that also counts an order placed soon after checkout as the "
                      "purchase measures higher checkout -> purchase rates (an abandoning customer often "
                      "buys in another session or shop), with the same order of the devices.",
        "stream": FUNNEL_STREAM,
        "planted_device_difference": {dev: {"checkout_to_purchase": CHECKOUT_TO_PURCHASE[dev],
                                            "add_to_cart_to_checkout": CART_TO_CHECKOUT[dev]}
                                      for dev in CHECKOUT_TO_PURCHASE},
        "planted_utm_source_difference": {
            "what": "probability that a click without a landing session brings a session that views a "
                    "product, adds it to the cart and leaves (raises add_to_cart per visit a little)",
            "cart_from_click": CART_FROM_CLICK_BY_UTM_SOURCE},
        "realised_device_rates": realised,
        "abandoned_sessions_drawn": drawn,
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
            "cart_from_click": {"utm_tagged": True, "of": "clicks without a landing session, by utm source",
                                "step_rates": {"product_view": 1.0, "add_to_cart": 1.0,
                                               "checkout": 0.0, "purchase": 0.0}},
            "abandoned_checkout": {"logged_in_from": "login (after add_to_cart)",
                                   "step_rates": {"product_view": 1.0, "add_to_cart": 1.0,
                                                  "checkout": 1.0, "purchase": 0.0}},
            "abandoned_cart": {"logged_in_from": None,
                               "step_rates": {"product_view": 1.0, "add_to_cart": 1.0,
                                              "checkout": 0.0, "purchase": 0.0}},
        },
        "sessions_reaching_step_by_device": by_device,
        "sessions_reaching_step_by_utm_source": by_source,
    }, indent=2, ensure_ascii=False), encoding="utf-8")
