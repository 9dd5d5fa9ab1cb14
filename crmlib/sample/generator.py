"""Synthetic, dirty, multi-source CRM sample data with a ground-truth folder.

`generate_sample` writes one file per source named in the data contract (contacts from three
systems, online and store orders, web events, marketing touchpoints, daily spend, an experiment
assignment log and surveys) plus ``truth/`` with the generating parameters and the true identity
of every record, plus ``order_lines.csv`` (the products of every e-shop order). Everything is drawn
from ``numpy.random.default_rng`` sub-streams of one seed, so a seed reproduces byte-identical files;
parts added later (order lines, survey categories and comments) draw from streams of their own
(``default_rng([seed, k])``), so adding them changed no byte of the older files. Row-level work is
vectorised (numpy / pyarrow); one million customers (about nine million orders) take about a minute
of CPU and under 3 GB of memory.

One module per source kind: ``people`` (contacts), ``orders`` (purchases, refunds, dirty rows),
``order_lines`` (catalogue, repurchase cycles, bought-together pairs), ``marketing`` (journeys,
touchpoints, spend), ``experiments``, ``events``, ``surveys``, ``truth``; shared helpers in
``_common``. This module runs them in order and keeps every name it used to define importable.

Conventions used in the files (the ingest stage must parse them; read every column as text):

- ``crm_contacts.csv`` UTF-8; ``signup_ts`` ``2025-03-14 18:22:05``, ``birth_date`` ``1985-07-12``,
  ``consent_marketing`` ``Y`` / ``N`` / empty, ``gender`` ``M`` / ``F`` / empty, ``linked_ids`` a
  ``;``-separated list of ``<source name>:<source_customer_id>`` (``eshop_accounts:E0000123;
  store_cards:8800000042``).
- ``eshop_accounts.jsonl`` UTF-8 JSON lines; ``created_at`` ISO 8601 with ``+08:00``; ``gender``
  ``male`` / ``female`` / null; ``newsletter_opt_in`` JSON boolean.
- ``store_cards.csv`` GBK, Chinese headers; dates ``2024/3/5`` (no zero padding); ``性别`` 男 / 女;
  card numbers are 10 digits (``88...``); ``城市`` sometimes carries the suffix 市.
- phones appear as ``13800138000``, ``138 0013 8000``, ``+86 13800138000``, ``138-0013-8000``,
  ``+8613800138000``; e-mails with case variants and surrounding blanks.
- ``eshop_orders.csv`` ``order_ts`` ``2025-03-14 18:22:05``; ``store_pos.csv`` ``txn_time``
  ``2025/03/14 18:22``. A refund row has a negative amount, status ``refund``, id ``<sale id>-R``
  and ``refund_of`` = the sale id.
- ``web_events.parquet`` ``event_ts`` is a naive timestamp; ``touchpoints.csv``,
  ``experiments.csv`` (``is_control`` true / false) and ``surveys.tsv`` use ``2025-03-14 18:22:05``;
  ``marketing_spend.csv`` ``date`` ``2025-03-14``.
- all times are naive local time (Asia/Shanghai) except ``created_at``.
- Chinese text outside ``store_cards``: order channels ``web`` / ``手机App`` / ``小程序`` in
  ``eshop_orders.csv``; the owned channels ``短信`` (SMS) and ``微信`` (WeChat) and some campaign ids
  (``百度_品牌词``, ``小红书_春季种草_2025``, ``EM_双11_2025``, ...) in ``touchpoints.csv`` and
  ``marketing_spend.csv``, so the reports show Chinese labels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

# the constants stay importable from here: tests and older code read generator.CHANNELS and friends
from ._common import (AS_OF, DAY, SOURCE_FILES, STORE_CARD_COLUMNS, WEEK, WINDOW_START, _EPOCH_END,  # noqa: F401
                      _EPOCH_START, _person_ids, _release_memory, _time_of_day, _ts_array)
from .events import EVENT_TYPES, PAGES, _write_events  # noqa: F401
from .experiments import (EXPERIMENT_ASSIGN_DAYS, EXPERIMENT_WINDOW_DAYS, EXPERIMENTS,  # noqa: F401
                          _run_experiments, _write_experiments)
from .marketing import (BASE_CONVERSION, CAMPAIGNS, CHANNELS, CONVERSION_DELAY_MAX_DAYS,  # noqa: F401
                        JOURNEY_TOUCH_SPAN_DAYS, JOURNEYS_PER_ESHOP_CUSTOMER_DAY, PROMO_SPEND_BOOST,
                        TOUCH_TYPES, _simulate_marketing, _write_spend, _write_touchpoints)
from .order_lines import eshop_order_base, write_order_lines
from .orders import (BGNBD, DIRTY_RATES, DIRTY_REASONS, GAMMA_GAMMA, NEVER_BUYER_SHARE, REFUND_RATE,  # noqa: F401
                     _R, _build_order_file, _format_orders, _simulate_purchases, _spend_amount)
from .people import MEMBERSHIP, _make_contacts, _make_people, _write_contacts  # noqa: F401
from .surveys import _write_surveys
from .truth import TRUTH_README, _write_truth  # noqa: F401


@dataclass
class SampleSummary:
    """What `generate_sample` wrote: file paths and data-row counts per file (header excluded)."""

    out_dir: Path
    paths: dict[str, Path] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    customers: int = 0
    seed: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        lines = [f"sample data in {self.out_dir} (customers={self.customers}, seed={self.seed}, "
                 f"{self.seconds:.1f} s)"]
        lines += [f"  {name:<22} {self.rows[name]:>12,d}  {path.name}" if name in self.rows
                  else f"  {name:<22} {'':>12}  {path.name}/" for name, path in self.paths.items()]
        return "\n".join(lines)



# ----------------------------------------------------------------------------- main entry
def generate_sample(out_dir: Path, customers: int = 5000, seed: int = 42) -> SampleSummary:
    """Write the multi-source sample dataset and its ground truth.

    Parameters
    ----------
    out_dir : Path
        Folder for the data files; the ground truth goes to ``out_dir / "truth"``.
    customers : int
        Number of true persons (each has records in one to three contact systems).
    seed : int
        Seed of ``numpy.random.default_rng`` sub-streams; the same seed gives byte-identical files.

    Returns
    -------
    SampleSummary
        Paths written and the number of data rows per file (headers excluded).
    """
    if customers < 50:
        raise ValueError("customers must be at least 50")
    t_start = time.perf_counter()
    out = Path(out_dir)
    truth_dir = out / "truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(12)]
    paths: dict[str, Path] = {}
    rows: dict[str, int] = {}
    n = customers

    people = _make_people(n, streams[0])
    # purchases first: sign-up dates are drawn relative to the first purchase
    buyer = streams[1].random(n) >= NEVER_BUYER_SHARE
    purch = _simulate_purchases(n, buyer, streams[1])
    rec = _make_contacts(people, streams[2], purch["t0"])
    _write_contacts(out, people, rec, streams[3], paths, rows)
    _release_memory()
    rec["sid_pa"] = pa.array(rec["sid"], pa.string())
    for key in ("sid", "names", "email_str", "phone_str", "linked"):
        del rec[key]

    # organic purchases (only persons with an e-shop account or a loyalty card can buy)
    rng = streams[5]
    has_e = rec["eshop_of"] >= 0
    has_s = rec["store_of"] >= 0
    keep = (has_e | has_s)[purch["person"]]
    o_person, o_ts = purch.pop("person")[keep].astype(np.int32), purch.pop("ts")[keep]
    del keep
    online_share = np.where(has_e & has_s, rng.beta(2, 2, n), np.where(has_e, 1.0, 0.0))
    o_online = rng.random(len(o_person)) < online_share[o_person]
    day_start = o_ts - (o_ts - _EPOCH_START) % DAY
    tod = np.where(o_online, _time_of_day(rng, len(o_ts), store=False),
                   _time_of_day(rng, len(o_ts), store=True))
    o_ts = day_start + tod
    del day_start, tod
    o_kind = np.zeros(len(o_person), np.int8)  # 0 organic, 1 marketing journey, 2 experiment

    # marketing journeys and the orders they cause (online)
    mk = _simulate_marketing(n, rec, purch, streams[4])
    conv_j = np.flatnonzero(mk["converted"])
    o_journey = np.r_[np.full(len(o_person), -1), conv_j].astype(np.int32)
    o_person = np.r_[o_person, mk["j_person"][conv_j]].astype(np.int32)
    o_ts = np.r_[o_ts, mk["conv_ts"][conv_j]]
    o_online = np.r_[o_online, np.ones(len(conv_j), bool)]
    o_kind = np.r_[o_kind, np.ones(len(conv_j), np.int8)]

    exp = _run_experiments(rec, purch, o_person, o_ts, streams[6])
    _release_memory()
    for units, a_ts, _amt, _ in exp["added"]:
        o_person = np.r_[o_person, units].astype(np.int32)
        o_ts = np.r_[o_ts, a_ts]
        o_online = np.r_[o_online, np.ones(len(units), bool)]
        o_kind = np.r_[o_kind, np.full(len(units), 2, np.int8)]
        o_journey = np.r_[o_journey, np.full(len(units), -1, np.int32)]
    n_orders = len(o_person)
    o_amount = _spend_amount(purch["nu"][o_person], rng)
    if exp["added"]:
        o_amount[o_kind == 2] = np.concatenate([a for _, _, a, _ in exp["added"]])
    amount_of_journey = np.full(len(mk["j_day"]), np.nan)
    amount_of_journey[o_journey[o_journey >= 0]] = o_amount[o_journey >= 0]

    # online orders go to the primary account, a third of a second account holder's to the second
    e2 = rec["eshop2_of"][o_person]
    use2 = o_online & (e2 >= 0) & (rng.random(n_orders) < 0.35) & (o_kind == 0)
    acct = np.where(use2, e2, rec["eshop_of"][o_person]).astype(np.int32)
    del e2, use2
    device_pref = rng.choice(3, n, p=[0.35, 0.45, 0.2])
    sales_ch = np.array(["web", "手机App", "小程序"], dtype=object)  # site, app, WeChat mini-program
    n_stores = 60
    home_store = rng.integers(0, n_stores, n)

    truth_frames = []
    online_rows = None
    for name in ("eshop_orders", "store_pos"):
        sel = np.flatnonzero(o_online if name == "eshop_orders" else ~o_online)
        sel = sel[np.argsort(o_ts[sel], kind="stable")]
        if name == "eshop_orders":
            ids = acct[sel]
        else:
            ids = rec["store_of"][o_person[sel]]
        o = _build_order_file(name, o_person[sel], o_ts[sel], o_amount[sel], o_kind[sel],
                              ids, rng)
        if name == "eshop_orders":
            o["acct_rec"] = acct[sel][o["src_row"]]
        m = len(o["shown_ts"])
        # attributes drawn per base row, so duplicated rows stay identical
        nb = len(o["base_amount"])
        br = o["base_row"]
        items_of_base = 1 + rng.poisson(np.clip(np.abs(o["base_amount"]) / 300.0, 0.1, 5.0))
        extra = {"items": items_of_base[br]}
        if name == "eshop_orders":
            line_base = eshop_order_base(o, items_of_base)
        if name == "eshop_orders":
            pref = device_pref[o["person"]]
            extra["channel"] = sales_ch[np.where(rng.random(nb)[br] < 0.7, pref, rng.integers(0, 3, nb)[br])]
        else:
            st = np.where(rng.random(nb)[br] < 0.85, home_store[o["person"]], rng.integers(0, n_stores, nb)[br])
            extra["store"] = st
            extra["payment"] = np.array(["wechat", "alipay", "card", "cash"], dtype=object)[
                rng.choice(4, nb, p=[0.5, 0.3, 0.15, 0.05])[br]]
        rows[name] = _format_orders(name, o, extra, rec["sid_pa"], out, rng)
        paths[name] = out / SOURCE_FILES[name]
        tf = pa.table({
            "source": pa.array(np.full(m, name, dtype=object), pa.string()),
            "row_number": pa.array(np.arange(1, m + 1, dtype=np.int64)),
            "source_customer_id": rec["sid_pa"].take(pa.array(o["rec"])),
            "person_id": _person_ids(o["person"]),
            "true_order_ts": _ts_array(o["true_ts"]),
            "true_amount": pa.array(o["amount"]),
            "origin": pa.array(["organic", "marketing", "experiment", "refund"], pa.string()).take(
                pa.array(np.where(o["refund"], 3, o["kind"]).astype(np.int64))),
            "dirty": pa.array(DIRTY_REASONS, pa.string()).take(
                pa.array(o["reason"].astype(np.int64), mask=o["reason"] == 0)),
            "is_real_order": pa.array(~np.isin(o["reason"], [_R["duplicate_exact"], _R["duplicate_id_conflict"]])),
        })
        truth_frames.append(tf)
        if name == "eshop_orders":  # what the events need
            online_rows = {k: o[k] for k in ("reason", "refund", "person", "acct_rec", "true_ts")}
        del o, tf, extra
        _release_memory()
    pq.write_table(pa.concat_tables(truth_frames), truth_dir / "orders.parquet")
    del truth_frames
    n_true_orders = np.bincount(o_person, minlength=n)
    purch["last_order_ts"] = np.full(n, np.iinfo(np.int64).min)  # the surveys' lapsing customers
    np.maximum.at(purch["last_order_ts"], o_person, o_ts)
    del o_person, o_ts, o_online, o_kind, o_journey, o_amount, acct
    _release_memory()

    tp = _write_touchpoints(out, rec, mk, exp, streams[8], paths, rows)
    _release_memory()
    _write_events(out, truth_dir, people, rec, tp, online_rows, streams[11], paths, rows, seed=seed)
    _release_memory()
    _write_spend(out, mk, tp, paths, rows, streams[7])
    _write_experiments(out, rec, exp, streams[9], paths, rows)
    _write_surveys(out, people, rec, purch, streams[10], paths, rows, seed=seed, truth_dir=truth_dir)
    _write_truth(truth_dir, n, seed, people, rec, purch, mk, exp, amount_of_journey,
                 n_true_orders)
    # drawn last, from a stream of its own: the files above stay byte-identical to earlier versions
    write_order_lines(out, truth_dir, seed, line_base, paths, rows)
    del line_base
    paths["truth"] = truth_dir
    return SampleSummary(out_dir=out, paths=paths, rows=rows, customers=n, seed=seed,
                         seconds=time.perf_counter() - t_start)


