"""Marketing: channels, campaigns, journeys and their conversions, touchpoints and daily spend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from ._common import (DAY, SOURCE_FILES, WINDOW_START, _EPOCH_END, _EPOCH_START, _day, _fmt_ts,
                      _write_chunked, _write_csv)
from .experiments import EXPERIMENTS

# marketing: incremental per-journey conversion probability of each channel. Paid channels' daily reach
# share follows their spend (adstock + Hill); search and affiliate are always on (flights of 25-160 %
# of their level), social and display run in bursts with dark weeks between them. Spend levels make
# paid media about 5 % of revenue with incremental ROAS from about 0.6 (display) to 3 (affiliate).
BASE_CONVERSION = 0.04
_ALWAYS_ON = [0.25, 0.7, 1.0, 1.6]
_BURSTS = [0.0, 0.0, 0.7, 1.0, 1.6]
CHANNELS: dict[str, dict] = {
    "paid_search": {"paid": True, "p": 0.20, "theta": 0.3, "hill_k": 1.0, "hill_s": 1.5,
                    "q_max": 0.50, "spend_per_customer_day": 0.06, "flights": _ALWAYS_ON, "cpm": 40.0,
                    "ctr": 0.040, "utm": ("baidu", "cpc")},
    "social": {"paid": True, "p": 0.12, "theta": 0.6, "hill_k": 0.9, "hill_s": 2.0,
               "q_max": 0.45, "spend_per_customer_day": 0.05, "flights": _BURSTS, "cpm": 25.0, "ctr": 0.012,
               "utm": ("douyin", "social")},
    "display": {"paid": True, "p": 0.04, "theta": 0.7, "hill_k": 1.2, "hill_s": 1.2,
                "q_max": 0.60, "spend_per_customer_day": 0.04, "flights": _BURSTS, "cpm": 8.0, "ctr": 0.004,
                "utm": ("dsp", "display")},
    "affiliate": {"paid": True, "p": 0.15, "theta": 0.2, "hill_k": 0.8, "hill_s": 1.8,
                  "q_max": 0.35, "spend_per_customer_day": 0.02, "flights": _ALWAYS_ON, "cpm": 15.0,
                  "ctr": 0.020, "utm": ("smzdm", "affiliate")},
    "email": {"paid": False, "p": 0.05, "q": 0.30, "cost_per_send": 0.01, "utm": ("edm", "email")},
    # the owned messaging channels carry Chinese names, as a Chinese brand's exports do: 短信 (SMS) and
    # 微信 (WeChat service-account template messages, free to send)
    "短信": {"paid": False, "p": 0.03, "q": 0.20, "cost_per_send": 0.05, "utm": ("sms", "sms")},
    "微信": {"paid": False, "p": 0.02, "q": 0.25, "cost_per_send": 0.0, "utm": ("wechat", "push")},
}
# campaign_id -> (channel, first day, last day or None = always on, weight); some ids are Chinese, as
# campaign names typed into ad platforms are
CAMPAIGNS: dict[str, tuple[str, str, str | None, float]] = {
    "百度_品牌词": ("paid_search", WINDOW_START, None, 1.0),
    "百度_通用词": ("paid_search", WINDOW_START, None, 1.5),
    "SOC_DOUYIN": ("social", WINDOW_START, None, 1.0),
    "小红书_春季种草_2025": ("social", "2025-03-01", "2025-05-31", 1.5),
    "DSP_RETARGET": ("display", WINDOW_START, None, 1.0),
    "AFF_CPS": ("affiliate", WINDOW_START, None, 1.0),
    "EM_NEWSLETTER": ("email", WINDOW_START, None, 1.0),
    "EM_618_2025": ("email", "2025-06-01", "2025-06-18", 3.0),
    "EM_双11_2025": ("email", "2025-11-01", "2025-11-11", 3.0),
    "EM_520_2026": ("email", "2026-05-11", "2026-05-31", 0.0),  # holdout experiment only
    "短信_会员关怀": ("短信", WINDOW_START, None, 1.0),
    "短信_双11_2025": ("短信", "2025-11-01", "2025-11-11", 2.0),
    "微信_服务号推送": ("微信", WINDOW_START, None, 1.0),
}
JOURNEYS_PER_ESHOP_CUSTOMER_DAY = 0.01
PROMO_SPEND_BOOST = 1.0  # paid spend x (1 + this) during the 618 and 11.11 promotions
JOURNEY_TOUCH_SPAN_DAYS = 3
CONVERSION_DELAY_MAX_DAYS = 3


# ----------------------------------------------------------------------------- marketing
def _campaign_matrix(channel: str, n_days: int) -> tuple[list[str], np.ndarray]:
    names, cols = [], []
    for cid, (ch, first, last, w) in CAMPAIGNS.items():
        if ch != channel:
            continue
        col = np.zeros(n_days)
        lo = max(_day(first), 0)
        hi = n_days - 1 if last is None else min(_day(last), n_days - 1)
        col[lo:hi + 1] = w
        names.append(cid)
        cols.append(col)
    return names, np.column_stack(cols)


def _simulate_marketing(n: int, rec: dict, purch: dict, rng: np.random.Generator) -> dict:
    n_days = (_EPOCH_END - _EPOCH_START) // DAY
    days = np.arange(n_days)
    dow = (days + 0) % 7  # 2024-01-01 is a Monday
    promo = np.zeros(n_days)
    for first, last in (("2024-06-01", "2024-06-18"), ("2024-11-01", "2024-11-11"),
                        ("2025-06-01", "2025-06-18"), ("2025-11-01", "2025-11-11"),
                        ("2026-06-01", "2026-06-18")):
        promo[_day(first):_day(last) + 1] = 1.0
    eshop_persons = np.flatnonzero(rec["eshop_of"] >= 0)

    # daily spend of the paid channels: flights x weekly pattern x promotions x noise
    spend = {}
    q_day = {}
    adstock_all = {}
    hill_all = {}
    for ch, c in CHANNELS.items():
        if c["paid"]:
            level = c["spend_per_customer_day"] * n
            flight = np.empty(n_days)
            pos = 0
            while pos < n_days:
                length = int(rng.integers(14, 43))
                flight[pos:pos + length] = rng.choice(c["flights"])
                pos += length
            s = level * flight * np.where(dow >= 5, 1.15, 1.0) * (1 + PROMO_SPEND_BOOST * promo) * rng.lognormal(0, 0.12, n_days)
            s = np.round(s, 2)
            ad = np.zeros(n_days)
            carry = 0.0
            for t in range(n_days):
                carry = s[t] + c["theta"] * carry
                ad[t] = carry
            x = ad / ad.mean()
            h = x ** c["hill_s"] / (x ** c["hill_s"] + c["hill_k"] ** c["hill_s"])
            q_day[ch] = c["q_max"] * h
            spend[ch] = s
            adstock_all[ch] = ad
            hill_all[ch] = h
        else:
            _, mat = _campaign_matrix(ch, n_days)
            boost = (mat[:, 1:].sum(axis=1) > 0) if mat.shape[1] > 1 else np.zeros(n_days, bool)
            q_day[ch] = np.full(n_days, c["q"]) * np.where(boost, 1.6, 1.0)

    # journeys: people start considering a purchase; over the next days the channels that spend reach
    # them. Each channel gets one candidate day per journey and reaches the person with that *day's*
    # reach share, so a touch happens when its channel is spending (not days later).
    last_start = n_days - JOURNEY_TOUCH_SPAN_DAYS - CONVERSION_DELAY_MAX_DAYS - 1
    rate = JOURNEYS_PER_ESHOP_CUSTOMER_DAY * len(eshop_persons)
    per_day = rng.poisson(rate, last_start)
    j_day = np.repeat(np.arange(last_start), per_day)
    j_person = eshop_persons[rng.integers(0, len(eshop_persons), len(j_day))]
    ch_names = list(CHANNELS)
    touch_day = j_day[:, None] + rng.integers(0, JOURNEY_TOUCH_SPAN_DAYS, (len(j_day), len(ch_names)))
    incl = np.column_stack([rng.random(len(j_day)) < q_day[ch][touch_day[:, ci]] for ci, ch in enumerate(ch_names)])
    # A journey no channel reaches still converts at the base rate (with no touch): dropping it would
    # make the base-rate conversions of reached journeys look caused by the channels that reached them.
    nj = len(j_day)
    p_c = np.array([CHANNELS[ch]["p"] for ch in ch_names])
    not_conv = (1 - BASE_CONVERSION) * np.prod(np.where(incl, 1 - p_c, 1.0), axis=1)
    p_all = 1 - not_conv
    # probability without channel c (only differs where c is included)
    p_wo = 1 - not_conv[:, None] / np.where(incl, 1 - p_c, 1.0)
    u = rng.random(nj)
    converted = u < p_all
    incremental = converted[:, None] & (u[:, None] >= p_wo) & incl

    # touches: 1-3 per reached channel, on its day and up to a day later
    jt, ct = np.nonzero(incl)
    n_t = 1 + rng.binomial(2, 0.3, len(jt))
    t_j = np.repeat(jt, n_t)
    t_c = np.repeat(ct, n_t)
    t_ts = (_EPOCH_START + touch_day[t_j, t_c].astype(np.int64) * DAY
            + rng.integers(0, 2 * DAY, len(t_j)))
    # an unreached journey's "last touch" is a moment in its span (its conversion, if any, follows it)
    last_touch = (_EPOCH_START + j_day.astype(np.int64) * DAY
                  + rng.integers(0, JOURNEY_TOUCH_SPAN_DAYS * DAY, nj))
    last_touch[np.unique(t_j)] = 0
    np.maximum.at(last_touch, t_j, t_ts)
    conv_ts = last_touch + rng.integers(3600, CONVERSION_DELAY_MAX_DAYS * DAY, nj)

    return {"n_days": n_days, "spend": spend, "q_day": q_day, "adstock": adstock_all, "hill": hill_all,
            "j_day": j_day, "j_person": j_person, "incl": incl, "p_all": p_all, "p_wo": p_wo,
            "converted": converted, "incremental": incremental, "conv_ts": conv_ts,
            "t_j": t_j, "t_c": t_c, "t_ts": t_ts, "ch_names": ch_names}


# touches are held as integer codes into these lists (tens of millions of rows at 1M customers: object
# arrays of strings would cost 8 bytes a row per column, and every sort would copy them); a channel's
# code is its position in CHANNELS (the simulation's ch_names)
TOUCH_TYPES = ["click", "impression", "send", "open"]
_TT = {t: i for i, t in enumerate(TOUCH_TYPES)}
_CAMPAIGN_CODE = {c: i for i, c in enumerate(CAMPAIGNS)}
_CHANNEL_CODE = {c: i for i, c in enumerate(CHANNELS)}
_PAID_CHANNEL_CODES = [_CHANNEL_CODE[c] for c, v in CHANNELS.items() if v["paid"]]


def _touch_details(t_c: np.ndarray, t_ts: np.ndarray, ch_names: list[str], n_days: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """campaign code (into ``CAMPAIGNS``), touch-type code (into :data:`TOUCH_TYPES`), cost for each touch
    (campaign drawn among the active ones)."""
    k = len(t_c)
    campaign = np.full(k, -1, dtype=np.int16)
    ttype = np.full(k, -1, dtype=np.int8)
    cost = np.full(k, np.nan)
    day = np.clip((t_ts - _EPOCH_START) // DAY, 0, n_days - 1)
    for ci, ch in enumerate(ch_names):
        idx = np.flatnonzero(t_c == ci)
        if not len(idx):
            continue
        names, mat = _campaign_matrix(ch, n_days)
        w = mat[day[idx]]
        cw = np.cumsum(w, axis=1) / w.sum(axis=1, keepdims=True)
        pick = (rng.random(len(idx))[:, None] > cw).sum(axis=1)
        campaign[idx] = np.array([_CAMPAIGN_CODE[c] for c in names], np.int16)[np.minimum(pick, len(names) - 1)]
        r = rng.random(len(idx))
        if ch == "paid_search":
            ttype[idx] = _TT["click"]
            cost[idx] = np.round(2.5 * rng.lognormal(0, 0.3, len(idx)), 2)
        elif ch in ("social", "display"):
            click_share = 0.4 if ch == "social" else 0.2
            click = r < click_share
            ttype[idx] = np.where(click, _TT["click"], _TT["impression"])
            cpc = 1.2 if ch == "social" else 0.8
            cost[idx] = np.where(click, np.round(cpc * rng.lognormal(0, 0.3, len(idx)), 2), np.nan)
        elif ch == "affiliate":
            ttype[idx] = _TT["click"]
            cost[idx] = np.round(0.5 * rng.lognormal(0, 0.2, len(idx)), 2)
        elif ch == "email":
            ttype[idx] = np.select([r < 0.5, r < 0.85], [_TT["send"], _TT["open"]], _TT["click"])
        elif ch == "短信":
            ttype[idx] = _TT["send"]
            cost[idx] = 0.05
        else:
            ttype[idx] = np.where(r < 0.6, _TT["send"], _TT["open"])
            cost[idx] = 0.0
    return campaign, ttype, cost


# ----------------------------------------------------------------------------- touches, events
def _hex_ids(prefix: str, rng: np.random.Generator, k: int) -> np.ndarray:
    vals = rng.integers(0, 2**62, k, dtype=np.int64)
    return (prefix + pd.Series(vals).map("{:016x}".format)).to_numpy(dtype=object)


def _write_touchpoints(out: Path, rec: dict, mk: dict, exp: dict, rng: np.random.Generator,
                       paths: dict, rows: dict) -> dict:
    n = len(rec["eshop_of"])
    ch_names = mk["ch_names"]
    # cookies: one per e-shop person, a second device (the app) for 30 %
    ep = np.flatnonzero(rec["eshop_of"] >= 0)
    two = rng.random(len(ep)) < 0.3
    ck_person = np.r_[ep, ep[two]]
    ck_id = _hex_ids("ck_", rng, len(ck_person))
    cookie1 = np.full(n, -1, dtype=np.int64)
    cookie1[ep] = np.arange(len(ep))
    cookie2 = np.full(n, -1, dtype=np.int64)
    cookie2[ep[two]] = len(ep) + np.arange(two.sum())
    ck_device = np.r_[np.where(rng.random(len(ep)) < 0.6, "mobile_web", "desktop"),
                      np.where(rng.random(two.sum()) < 0.6, "android_app", "ios_app")].astype(object)

    def cookie_of(persons: np.ndarray) -> np.ndarray:
        c2 = cookie2[persons]
        return np.where((c2 >= 0) & (rng.random(len(persons)) < 0.3), c2, cookie1[persons])

    t_c, t_ts = mk["t_c"], mk["t_ts"]
    t_person = mk["j_person"][mk["t_j"]]
    campaign, ttype, cost = _touch_details(t_c, t_ts, ch_names, mk["n_days"], rng)
    t_channel = t_c.astype(np.int8)  # code into ch_names
    t_journey = mk["t_j"].astype(np.int64)

    # holdout campaign: only the treatment arm gets the sends (and some opens / clicks)
    for (eid, units, treat, a_ts), e in zip(exp["assignments"], EXPERIMENTS):
        if "holdout" not in e:
            continue
        tu, ta = units[treat], a_ts[treat]
        r = rng.random(len(tu))
        opened, clicked = r < 0.35, r < 0.08
        hp = np.r_[tu, tu[opened], tu[clicked]]
        hts = np.r_[ta + 60, ta[opened] + rng.integers(600, 2 * DAY, opened.sum()),
                    ta[clicked] + rng.integers(2 * DAY, 3 * DAY, clicked.sum())]
        htype = np.r_[np.full(len(tu), _TT["send"], np.int8), np.full(opened.sum(), _TT["open"], np.int8),
                      np.full(clicked.sum(), _TT["click"], np.int8)]
        t_person = np.r_[t_person, hp]
        t_ts = np.r_[t_ts, hts]
        t_channel = np.r_[t_channel, np.full(len(hp), _CHANNEL_CODE[e["holdout"]["channel"]], np.int8)]
        campaign = np.r_[campaign, np.full(len(hp), _CAMPAIGN_CODE[e["holdout"]["campaign_id"]], np.int16)]
        ttype = np.r_[ttype, htype]
        cost = np.r_[cost, np.full(len(hp), np.nan)]
        t_journey = np.r_[t_journey, np.full(len(hp), -1)]

    paid = np.isin(t_channel, _PAID_CHANNEL_CODES)
    anonymous = paid & (rng.random(len(t_ts)) < 0.45)
    t_cookie = cookie_of(t_person)
    order = np.argsort(t_ts, kind="stable")
    t_person, t_ts, t_channel, campaign, ttype, cost, anonymous, t_cookie, t_journey = (
        x[order] for x in (t_person, t_ts, t_channel, campaign, ttype, cost, anonymous, t_cookie, t_journey))
    v_sid = rec["sid_pa"]
    v_ck = pa.array(ck_id, pa.string())
    v_channel = pa.array(ch_names, pa.string())
    v_campaign = pa.array(list(CAMPAIGNS), pa.string())
    v_type = pa.array(TOUCH_TYPES, pa.string())

    def build(sl: slice) -> pa.Table:
        anon = anonymous[sl]
        acct = rec["eshop_of"][t_person[sl]]
        return pa.table({
            "touch_ts": _fmt_ts(t_ts[sl], "%Y-%m-%d %H:%M:%S"),
            "channel": v_channel.take(pa.array(t_channel[sl])),
            "campaign_id": v_campaign.take(pa.array(campaign[sl], mask=campaign[sl] < 0)),
            "touch_type": v_type.take(pa.array(ttype[sl])),
            "cost": pa.array(cost[sl], pa.float64(), from_pandas=True),
            "source_customer_id": v_sid.take(pa.array(acct, mask=anon)),
            "anonymous_id": v_ck.take(pa.array(t_cookie[sl], mask=~anon)),
        })

    paths["touchpoints"] = out / SOURCE_FILES["touchpoints"]
    _write_chunked(paths["touchpoints"], len(t_ts), build)
    rows["touchpoints"] = len(t_ts)
    return {"person": t_person, "ts": t_ts, "channel": t_channel, "campaign": campaign,
            "type": ttype, "cost": cost, "anonymous": anonymous, "cookie": t_cookie,
            "journey": t_journey, "ck_id": ck_id, "ck_person": ck_person, "ck_device": ck_device,
            "cookie_of": cookie_of}


def _write_spend(out: Path, mk: dict, tp: dict, paths: dict, rows: dict,
                 rng: np.random.Generator) -> None:
    n_days = mk["n_days"]
    frames = []
    day_of_touch = (tp["ts"] - _EPOCH_START) // DAY
    for ch, c in CHANNELS.items():
        names, mat = _campaign_matrix(ch, n_days)
        if c["paid"]:
            share = mat / mat.sum(axis=1, keepdims=True)
            cost = np.round(mk["spend"][ch][:, None] * share, 2)
            impressions = np.round(cost / c["cpm"] * 1000 * rng.lognormal(0, 0.05, cost.shape))
            clicks = rng.binomial(impressions.astype(np.int64), c["ctr"])
            active = mat > 0
        else:
            cost = np.zeros_like(mat)
            impressions = np.zeros_like(mat)
            clicks = np.zeros_like(mat)
            for j, cid in enumerate(names):
                hit = tp["campaign"] == _CAMPAIGN_CODE[cid]
                d = day_of_touch[hit]
                sends = np.bincount(d[tp["type"][hit] == _TT["send"]], minlength=n_days)[:n_days]
                impressions[:, j] = sends
                clicks[:, j] = np.bincount(d[tp["type"][hit] == _TT["click"]], minlength=n_days)[:n_days]
                cost[:, j] = np.round(sends * c["cost_per_send"], 2)
            active = impressions > 0
        dd, jj = np.nonzero(active)
        frames.append(pd.DataFrame({
            "day": dd, "channel": ch, "campaign_id": np.asarray(names, dtype=object)[jj],
            "cost": cost[dd, jj], "impressions": impressions[dd, jj].astype(np.int64),
            "clicks": clicks[dd, jj].astype(np.int64)}))
    df = pd.concat(frames, ignore_index=True).sort_values(["day", "channel", "campaign_id"], kind="stable")
    dates = _fmt_ts(_EPOCH_START + df["day"].to_numpy().astype(np.int64) * DAY, "%Y-%m-%d")
    tbl = pa.table({"date": dates, "channel": pa.array(df["channel"].to_numpy(), pa.string()),
                    "campaign_id": pa.array(df["campaign_id"].to_numpy(), pa.string()),
                    "cost": pa.array(df["cost"].to_numpy()),
                    "impressions": pa.array(df["impressions"].to_numpy()),
                    "clicks": pa.array(df["clicks"].to_numpy())})
    paths["marketing_spend"] = out / SOURCE_FILES["marketing_spend"]
    _write_csv(tbl, paths["marketing_spend"])
    rows["marketing_spend"] = len(df)
