"""Synthetic, dirty, multi-source CRM sample data with a ground-truth folder.

`generate_sample` writes one file per source named in the data contract (contacts from three
systems, online and store orders, web events, marketing touchpoints, daily spend, an experiment
assignment log and surveys) plus ``truth/`` with the generating parameters and the true identity
of every record. Everything is drawn from ``numpy.random.default_rng`` sub-streams of one seed, so a
seed reproduces byte-identical files. Row-level work is vectorised (numpy / pyarrow); one million
customers (about nine million orders) take about a minute of CPU and under 3 GB of memory.

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

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from . import vocab

__all__ = ["SampleSummary", "generate_sample", "SOURCE_FILES", "STORE_CARD_COLUMNS", "AS_OF"]

AS_OF = "2026-06-30"
WINDOW_START = "2024-01-01"
DAY = 86_400
WEEK = 7 * DAY
_EPOCH_START = int(np.datetime64(WINDOW_START, "s").astype(np.int64))
_EPOCH_END = int((np.datetime64(AS_OF, "s") + np.timedelta64(1, "D")).astype(np.int64))  # exclusive

# source name (as used in params and in linked_ids) -> file name
SOURCE_FILES: dict[str, str] = {
    "crm_contacts": "crm_contacts.csv",
    "eshop_accounts": "eshop_accounts.jsonl",
    "store_cards": "store_cards.csv",
    "eshop_orders": "eshop_orders.csv",
    "store_pos": "store_pos.csv",
    "web_events": "web_events.parquet",
    "touchpoints": "touchpoints.csv",
    "marketing_spend": "marketing_spend.csv",
    "experiments": "experiments.csv",
    "surveys": "surveys.tsv",
}

STORE_CARD_COLUMNS: dict[str, str] = {
    "会员号": "source_customer_id", "姓名": "name", "手机": "phone", "性别": "gender",
    "生日": "birth_date", "城市": "city", "省份": "province", "注册日期": "signup_ts",
    "积分": "loyalty_points", "等级": "loyalty_tier",
}

# purchase model (BG/NBD, weekly rates) and spend model (Gamma-Gamma)
BGNBD = {"r": 0.9, "alpha": 2.6, "a": 1.3, "b": 12.0}
GAMMA_GAMMA = {"p": 5.0, "q": 4.0, "gamma": 180.0}
MEMBERSHIP = {"crm_contacts": 0.6, "eshop_accounts": 0.9, "store_cards": 0.45,
              "second_eshop_account": 0.02}
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
EXPERIMENTS: list[dict] = [
    {"id": "aa_homepage_banner", "start": "2026-01-12", "weights": {"control": 0.5, "treatment": 0.5},
     "observed_treatment_share": 0.5, "rel_lift": 0.0, "unit_share": 0.7,
     "kind": "A/A (null): no effect"},
    {"id": "checkout_redesign", "start": "2026-03-02", "weights": {"control": 0.5, "treatment": 0.5},
     "observed_treatment_share": 0.5, "rel_lift": 0.30, "unit_share": 1.0,
     "kind": "real lift on conversion (and revenue through the extra orders)"},
    {"id": "free_shipping_threshold", "start": "2026-04-13",
     "weights": {"control": 0.5, "treatment": 0.5}, "observed_treatment_share": 0.53,
     "rel_lift": 0.0, "unit_share": 1.0,
     "kind": "broken split: 50/50 design, 53/47 observed (control assignments lost by a logging bug)"},
    {"id": "email_520_holdout", "start": "2026-05-11", "weights": {"control": 0.2, "treatment": 0.8},
     "observed_treatment_share": 0.8, "rel_lift": 0.30, "unit_share": 1.0,
     "holdout": {"channel": "email", "campaign_id": "EM_520_2026"},
     "kind": "marketing holdout: treatment receives campaign EM_520_2026 (email), control is held out"},
]
EXPERIMENT_ASSIGN_DAYS = 7
EXPERIMENT_WINDOW_DAYS = 14


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


# ----------------------------------------------------------------------------- small helpers
def _ts_array(seconds: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(seconds, dtype=np.int64).astype("datetime64[s]"))


def _fmt_ts(seconds: np.ndarray, fmt: str) -> pa.Array:
    """Format naive local seconds; casting is ~25x faster than pyarrow's strftime."""
    ts = _ts_array(seconds)
    if fmt == "%Y-%m-%d":
        return pc.cast(pc.cast(ts, pa.date32()), pa.string())
    text = pc.cast(ts, pa.string())  # 2025-03-14 18:22:05
    if fmt == "%Y-%m-%d %H:%M:%S":
        return text
    if fmt == "%Y/%m/%d %H:%M":
        return pc.replace_substring(pc.utf8_slice_codeunits(text, 0, 16), "-", "/")
    if fmt == "%Y-%m-%dT%H:%M:%S":
        return pc.replace_substring(text, " ", "T")
    return pc.strftime(ts, format=fmt)


def _write_chunked(path: Path, n_rows: int, build, kind: str = "csv", delimiter: str = ",",
                   chunk: int = 1_000_000) -> None:
    """Write build(slice) tables chunk by chunk, so big files never sit in memory as text."""
    writer = None
    for lo in range(0, max(n_rows, 1), chunk):
        tbl = build(slice(lo, min(lo + chunk, n_rows)))
        if writer is None:
            if kind == "csv":
                writer = pacsv.CSVWriter(path, tbl.schema, write_options=pacsv.WriteOptions(
                    quoting_style="needed", delimiter=delimiter, batch_size=65_536))
            else:
                writer = pq.ParquetWriter(path, tbl.schema)
        writer.write_table(tbl)
    writer.close()


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    digits = pc.utf8_lpad(pc.cast(pa.array(np.asarray(numbers, dtype=np.int64)), pa.string()),
                          width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _mask(arr: pa.Array, null_mask: np.ndarray) -> pa.Array:
    """Set entries to null where null_mask is true."""
    if not null_mask.any():
        return arr
    return pc.if_else(pa.array(null_mask), pa.scalar(None, arr.type), arr)


def _replace(arr: pa.Array, where: np.ndarray, values: np.ndarray) -> pa.Array:
    """Replace arr[where] (boolean mask) by the strings in values (len == where.sum())."""
    if not where.any():
        return arr
    full = np.empty(len(arr), dtype=object)
    full[where] = values
    return pc.if_else(pa.array(where), pa.array(full, type=pa.string()), arr)


def _amount_str(amount: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(np.round(amount, 2)), pa.string())


def _write_csv(table: pa.Table, path: Path, delimiter: str = ",") -> None:
    pacsv.write_csv(table, path, write_options=pacsv.WriteOptions(
        quoting_style="needed", delimiter=delimiter, batch_size=65_536))


def _release_memory() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them otherwise; keeps peak RSS low at 1M)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _group_rank(groups: np.ndarray) -> np.ndarray:
    """0-based rank of each element inside its run of equal, contiguous group values."""
    n = len(groups)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.r_[True, groups[1:] != groups[:-1]]
    start_idx = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    return np.arange(n) - start_idx


def _day(date: str) -> int:
    return int((np.datetime64(date, "s").astype(np.int64) - _EPOCH_START) // DAY)


def _time_of_day(rng: np.random.Generator, n: int, store: bool) -> np.ndarray:
    """Seconds after midnight: stores open 10:00-22:00, online peaks in the evening."""
    if store:
        weights = np.array([0] * 10 + [4, 6, 8, 7, 6, 6, 7, 8, 9, 10, 8, 5] + [0, 0], dtype=float)
    else:
        weights = np.array([2, 1, 0.5, 0.3, 0.3, 0.5, 1, 2, 3, 4, 5, 6, 7, 6, 5, 5, 5, 6, 7, 8,
                            10, 11, 9, 5], dtype=float)
    hour = rng.choice(24, size=n, p=weights / weights.sum())
    return hour * 3600 + rng.integers(0, 3600, size=n)


# ----------------------------------------------------------------------------- people
def _make_people(n: int, rng: np.random.Generator) -> dict:
    """Persons with true attributes, plus the trap groups (shared family phone, company email)."""
    sur_w = np.array([w for _, _, w in vocab.SURNAMES])
    surname_idx = rng.choice(len(vocab.SURNAMES), size=n, p=sur_w / sur_w.sum())
    female = rng.random(n) < 0.55

    # traps: families share a phone (same surname), colleagues share a company mailbox
    order = rng.permutation(n)
    n_fam = max(2, int(round(0.010 * n)))
    fam_sizes = rng.choice([2, 2, 3, 3, 4], size=n_fam)
    n_co = max(1, int(round(0.0028 * n)))
    co_sizes = rng.integers(3, 7, size=n_co)
    trap_sizes = np.r_[fam_sizes, co_sizes]
    trap_members = order[:trap_sizes.sum()]
    trap_id = np.full(n, -1, dtype=np.int64)
    trap_rank = np.full(n, -1, dtype=np.int64)
    gid = np.repeat(np.arange(len(trap_sizes)), trap_sizes)
    trap_id[trap_members] = gid
    trap_rank[trap_members] = _group_rank(gid)
    trap_is_family = np.zeros(n, dtype=bool)
    trap_is_family[trap_members[gid < n_fam]] = True
    head_of = np.full(n, -1, dtype=np.int64)
    heads = trap_members[np.r_[0, np.cumsum(trap_sizes)[:-1]]]
    head_of[trap_members] = heads[gid]
    fam_member = trap_is_family & (trap_rank > 0)
    # the first partner has the other gender; family members share the head's surname
    partner = fam_member & (trap_rank == 1)
    female[partner] = ~female[head_of[partner]]
    surname_idx[fam_member] = surname_idx[head_of[fam_member]]

    male_chars = np.array([c for c, _ in vocab.MALE_GIVEN])
    male_py = np.array([p for _, p in vocab.MALE_GIVEN])
    fem_chars = np.array([c for c, _ in vocab.FEMALE_GIVEN])
    fem_py = np.array([p for _, p in vocab.FEMALE_GIVEN])

    def draw_given(count: int, fem: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        two = rng.random(count) < 0.65
        i1 = np.where(fem, rng.integers(0, len(fem_chars), count), rng.integers(0, len(male_chars), count))
        i2 = np.where(fem, rng.integers(0, len(fem_chars), count), rng.integers(0, len(male_chars), count))
        c1 = np.where(fem, fem_chars[np.minimum(i1, len(fem_chars) - 1)], male_chars[np.minimum(i1, len(male_chars) - 1)])
        c2 = np.where(fem, fem_chars[np.minimum(i2, len(fem_chars) - 1)], male_chars[np.minimum(i2, len(male_chars) - 1)])
        p1 = np.where(fem, fem_py[np.minimum(i1, len(fem_py) - 1)], male_py[np.minimum(i1, len(male_py) - 1)])
        p2 = np.where(fem, fem_py[np.minimum(i2, len(fem_py) - 1)], male_py[np.minimum(i2, len(male_py) - 1)])
        given = np.where(two, np.char.add(c1, c2), c1)
        given_py = np.where(two, np.char.add(p1, p2), p1)
        return given, given_py, two

    given, given_py, _ = draw_given(n, female)
    # trap members must differ from the rest of their group: redraw until all names are distinct
    for _ in range(50):
        in_trap = trap_id >= 0
        key = pd.Series(trap_id[in_trap]).astype(str) + "|" + pd.Series(given[in_trap])
        dup = key.duplicated().to_numpy()
        if not dup.any():
            break
        idx = np.flatnonzero(in_trap)[dup]
        g, gp, _ = draw_given(len(idx), female[idx])
        given[idx], given_py[idx] = g, gp

    sur_chars = np.array([s for s, _, _ in vocab.SURNAMES])
    sur_py = np.array([p for _, p, _ in vocab.SURNAMES])
    name = np.char.add(sur_chars[surname_idx], given)

    as_of_day = _day(AS_OF)
    age_days = ((18 + rng.gamma(3.0, 6.5, size=n)).clip(18, 78) * 365.25).astype(np.int64)
    birth_day = as_of_day - age_days - rng.integers(0, 365, size=n)
    # family members: clearly different birth dates (partner within ~8 years, children 22-35 younger)
    child = fam_member & (trap_rank >= 2)
    hb = birth_day[head_of[partner]]
    birth_day[partner] = hb + rng.choice([-1, 1], size=partner.sum()) * rng.integers(200, 8 * 365, size=partner.sum())
    birth_day[child] = np.minimum(birth_day[head_of[child]] + rng.integers(22 * 365, 35 * 365, size=child.sum()),
                                  as_of_day - 16 * 365)

    city_w = np.array([w for _, _, w in vocab.CITIES])
    city_idx = rng.choice(len(vocab.CITIES), size=n, p=city_w / city_w.sum())
    city_idx[fam_member] = city_idx[head_of[fam_member]]

    # personal e-mail: unique by construction (unique number in every local part)
    uniq = rng.permutation(n)
    dom_w = np.array([w for _, w in vocab.EMAIL_DOMAINS])
    dom_idx = rng.choice(len(vocab.EMAIL_DOMAINS), size=n, p=dom_w / dom_w.sum())
    domains = np.array([d for d, _ in vocab.EMAIL_DOMAINS])[dom_idx]
    style = rng.integers(0, 3, size=n)
    sp = pd.Series(sur_py[surname_idx])
    gp = pd.Series(given_py)
    us = pd.Series(uniq).astype(str)
    local = np.select(
        [style == 0, style == 1],
        [(sp + "." + gp + us).to_numpy(), (gp + sp + us).to_numpy()],
        (sp + gp + "_" + us).to_numpy())
    qq = (pd.Series(10_000_000 + uniq.astype(np.int64) * 97 + rng.integers(0, 97, n))).astype(str).to_numpy()
    local = np.where(dom_idx == 0, qq, local)
    email = (pd.Series(local) + "@" + pd.Series(domains)).to_numpy(dtype=object)

    prefixes = np.array([130, 131, 132, 133, 135, 136, 137, 138, 139, 150, 151, 152, 155, 156,
                         157, 158, 159, 176, 177, 180, 181, 182, 183, 186, 187, 188, 189, 199])
    suffixes = rng.choice(10**8, size=2 * n, replace=False)
    phone = rng.choice(prefixes, size=2 * n).astype(np.int64) * 10**8 + suffixes
    old_phone = phone[n:]
    phone = phone[:n]
    # family: everyone registers with the head's phone
    phone[fam_member] = phone[head_of[fam_member]]

    # company mailbox per colleague group
    co_groups = np.arange(n_fam, n_fam + n_co)
    co_email = np.array([_company_mailbox(g) for g in range(n_co)], dtype=object)

    return {
        "n": n, "name": name.astype(object), "surname_idx": surname_idx, "female": female,
        "given_len": np.char.str_len(given), "birth_day": birth_day, "city_idx": city_idx,
        "email": email, "phone": phone, "old_phone": old_phone, "trap_id": trap_id,
        "trap_is_family": trap_is_family, "n_families": n_fam, "co_email": co_email,
        "co_groups": co_groups,
    }


def _company_mailbox(group: int) -> str:
    domains = vocab.COMPANY_DOMAINS
    base = domains[group % len(domains)]
    cycle = group // len(domains)
    if cycle:
        stem, tld = base.split(".", 1)
        base = f"{stem}{cycle}.{tld}"
    return f"{vocab.COMPANY_MAILBOXES[group % len(vocab.COMPANY_MAILBOXES)]}@{base}"


# ----------------------------------------------------------------------------- contacts
def _phone_variants(phone: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """Format 11-digit numbers: 0 plain, 1 '138 0013 8000', 2 '+86 13800138000', 3 '138-0013-8000',
    4 '+8613800138000'."""
    s = pd.Series(phone.astype(np.int64)).astype(str)
    a, b, c = s.str[:3], s.str[3:7], s.str[7:]
    out = np.select([kind == 1, kind == 2, kind == 3, kind == 4],
                    [(a + " " + b + " " + c).to_numpy(), ("+86 " + s).to_numpy(),
                     (a + "-" + b + "-" + c).to_numpy(), ("+86" + s).to_numpy()],
                    s.to_numpy())
    return out.astype(object)


def _email_variants(email: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """0 as is, 1 Title.Case, 2 UPPER, 3 ' Title.Case ' with blanks around."""
    s = pd.Series(email, dtype=object)
    title = s.str.title()
    out = np.select([kind == 1, kind == 2, kind == 3],
                    [title.to_numpy(), s.str.upper().to_numpy(), (" " + title + " ").to_numpy()],
                    s.to_numpy())
    return out.astype(object)


def _typo(names: np.ndarray, female: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Change the last character of the given name to another common one of the same gender."""
    out = names.copy()
    fem = np.array([c for c, _ in vocab.FEMALE_GIVEN])
    mal = np.array([c for c, _ in vocab.MALE_GIVEN])
    repl = np.where(female, fem[rng.integers(0, len(fem), len(names))], mal[rng.integers(0, len(mal), len(names))])
    s = pd.Series(names, dtype=object)
    changed = (s.str[:-1] + pd.Series(repl)).to_numpy(dtype=object)
    same = changed == names
    out[~same] = changed[~same]
    return out


def _make_contacts(people: dict, rng: np.random.Generator, t0: np.ndarray) -> dict:
    n = people["n"]
    m = MEMBERSHIP
    has = np.column_stack([rng.random(n) < m["crm_contacts"], rng.random(n) < m["eshop_accounts"],
                           rng.random(n) < m["store_cards"]])
    has[~has.any(axis=1), 1] = True
    second = has[:, 1] & (rng.random(n) < m["second_eshop_account"])

    # records: one row per (person, source[, account]); src 0 crm, 1 eshop, 2 store
    person = np.r_[np.flatnonzero(has[:, 0]), np.flatnonzero(has[:, 1]), np.flatnonzero(second),
                   np.flatnonzero(has[:, 2])]
    src = np.r_[np.zeros(has[:, 0].sum()), np.ones(has[:, 1].sum() + second.sum()),
                np.full(has[:, 2].sum(), 2)].astype(np.int8)
    is_second = np.r_[np.zeros(has[:, 0].sum() + has[:, 1].sum(), bool), np.ones(second.sum(), bool),
                      np.zeros(has[:, 2].sum(), bool)]
    nrec = len(person)
    rec_count = np.bincount(person, minlength=n)

    # identifier values (what normalisation recovers): email code -1 = none, phone 0 = none
    email_code = person.astype(np.int64).copy()
    trap = people["trap_id"][person]
    colleague = (trap >= people["n_families"])
    company = colleague & (src == 1) | colleague & (src == 0) & (rng.random(nrec) < 0.5)
    email_code[company] = n + (trap[company] - people["n_families"])
    phone_val = people["phone"][person].copy()
    email_present = np.select([src == 0, src == 1], [rng.random(nrec) < 0.8, rng.random(nrec) < 0.93], False)
    phone_present = np.select([src == 0, src == 1], [rng.random(nrec) < 0.85, rng.random(nrec) < 0.7],
                              rng.random(nrec) < 0.98)
    email_present[company] = True

    # source ids: sequential numbers in a random order of the records
    sid_num = np.zeros(nrec, dtype=np.int64)
    for s in range(3):
        idx = np.flatnonzero(src == s)
        sid_num[idx[rng.permutation(len(idx))]] = np.arange(1, len(idx) + 1)
    sid = np.empty(nrec, dtype=object)
    sid[src == 0] = np.asarray(_ids("CRM", sid_num[src == 0], 7).to_pylist(), dtype=object)
    sid[src == 1] = np.asarray(_ids("E", sid_num[src == 1], 7).to_pylist(), dtype=object)
    sid[src == 2] = (8_800_000_000 + sid_num[src == 2] * 7 + rng.integers(0, 7, (src == 2).sum())).astype(str)
    src_names = np.array(["crm_contacts", "eshop_accounts", "store_cards"])

    # loyalty cards whose phone changed: only the CRM's linked_ids can connect them
    crm_of = np.full(n, -1, dtype=np.int64)
    crm_of[person[src == 0]] = np.flatnonzero(src == 0)
    store_of = np.full(n, -1, dtype=np.int64)
    store_of[person[src == 2]] = np.flatnonzero(src == 2)
    eshop_of = np.full(n, -1, dtype=np.int64)
    eshop_of[person[(src == 1) & ~is_second]] = np.flatnonzero((src == 1) & ~is_second)
    eshop2_of = np.full(n, -1, dtype=np.int64)
    eshop2_of[person[is_second]] = np.flatnonzero(is_second)
    both = (crm_of >= 0) & (store_of >= 0) & (people["trap_id"] < 0)
    moved = both & (rng.random(n) < 0.04)
    phone_val[store_of[moved]] = people["old_phone"][moved]
    phone_present[store_of[moved]] = True

    # linked_ids on some CRM rows (always on the moved ones)
    link_person = (crm_of >= 0) & (rec_count > 1) & ((rng.random(n) < 0.25) | moved)
    link_e = link_person & (eshop_of >= 0) & (rng.random(n) < 0.9)
    link_s = link_person & (store_of >= 0) & ((rng.random(n) < 0.9) | moved)
    linked = np.full(nrec, None, dtype=object)
    parts = []
    for flag, of, nm in ((link_e, eshop_of, "eshop_accounts"), (link_s, store_of, "store_cards")):
        part = np.full(n, "", dtype=object)
        part[flag] = nm + ":" + pd.Series(sid[of[flag]], dtype=object)
        parts.append(part)
    joined = pd.Series(parts[0]).str.cat(pd.Series(parts[1]), sep=";").str.strip(";")
    has_link = link_e | link_s
    linked[crm_of[has_link]] = joined.to_numpy(dtype=object)[has_link]

    link_from = np.r_[crm_of[link_e], crm_of[link_s]]
    link_to = np.r_[eshop_of[link_e], store_of[link_s]]

    def split_persons() -> np.ndarray:
        """Persons whose records are not one component through shared identifiers."""
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        has_e = email_present & (src != 2)
        has_p = phone_present
        # identifier nodes are (person, value): here only links inside one person count
        _, e_node = np.unique(person[has_e].astype(np.int64) * (2 * n + 1) + email_code[has_e],
                              return_inverse=True)
        _, p_node = np.unique(person[has_p].astype(np.int64) * 20_000_000_000 + phone_val[has_p],
                              return_inverse=True)
        n_e = e_node.max() + 1 if len(e_node) else 0
        n_p = p_node.max() + 1 if len(p_node) else 0
        rows_ = np.r_[np.flatnonzero(has_e), np.flatnonzero(has_p), link_from]
        cols_ = np.r_[nrec + e_node, nrec + n_e + p_node, link_to]
        size = nrec + n_e + n_p
        graph = coo_matrix((np.ones(len(rows_), np.int8), (rows_, cols_)), shape=(size, size))
        _, label = connected_components(graph, directed=False)
        pairs = np.unique(np.c_[person, label[:nrec]], axis=0)
        return np.bincount(pairs[:, 0], minlength=n) > 1

    # the records of a person must be connected through normalised e-mail, phone or linked ids
    fix = split_persons()[person] & (phone_val == people["phone"][person])
    phone_present[fix] = True
    assert not split_persons().any()

    # presentation: typos and formatting variants
    names = people["name"][person].copy()
    typo = (rec_count[person] > 1) & (src != 0) & (rng.random(nrec) < 0.05)
    names[typo] = _typo(names[typo], people["female"][person[typo]], rng)
    name_missing = (src == 1) & (rng.random(nrec) < 0.15)
    names[name_missing] = None

    all_emails = np.r_[people["email"], people["co_email"]]
    email_str = np.full(nrec, None, dtype=object)
    ep = email_present & (src != 2)
    ekind = np.select([src == 0, src == 1],
                      [rng.choice(4, nrec, p=[0.55, 0.2, 0.1, 0.15]), rng.choice(4, nrec, p=[0.85, 0.05, 0.05, 0.05])], 0)
    email_str[ep] = _email_variants(all_emails[email_code[ep]], ekind[ep])
    pkind = np.select([src == 0, src == 1],
                      [rng.choice(5, nrec, p=[0.4, 0.15, 0.15, 0.15, 0.15]), rng.choice(5, nrec, p=[0.6, 0, 0.4, 0, 0])],
                      rng.choice(5, nrec, p=[0.9, 0.1, 0, 0, 0]))
    phone_str = np.full(nrec, None, dtype=object)
    phone_str[phone_present] = _phone_variants(phone_val[phone_present], pkind[phone_present])

    # signup times: a while before the first purchase
    lead = rng.exponential(90 * DAY, nrec) + rng.integers(0, DAY, nrec)
    base_t0 = np.minimum(t0[person], _EPOCH_END - DAY)
    signup = (base_t0 - lead).astype(np.int64)
    signup = np.maximum(signup, _EPOCH_START - 3 * 365 * DAY)
    return {
        "person": person, "src": src, "src_names": src_names, "is_second": is_second, "sid": sid,
        "names": names, "email_str": email_str, "phone_str": phone_str, "linked": linked,
        "signup": signup, "email_code": np.where(ep, email_code, -1),
        "phone_val": np.where(phone_present, phone_val, 0), "crm_of": crm_of, "eshop_of": eshop_of,
        "eshop2_of": eshop2_of, "store_of": store_of, "moved": moved, "has": has,
    }


def _write_contacts(out: Path, people: dict, rec: dict, rng: np.random.Generator,
                    paths: dict, rows: dict) -> None:
    src, person = rec["src"], rec["person"]
    cities = np.array([c for c, _, _ in vocab.CITIES], dtype=object)
    provinces = np.array([p for _, p, _ in vocab.CITIES], dtype=object)
    female = people["female"]
    birth_s = _EPOCH_START + people["birth_day"].astype(np.int64) * DAY

    # --- CRM (UTF-8 CSV)
    i = np.flatnonzero(src == 0)
    i = i[np.argsort(rec["sid"][i].astype(str), kind="stable")]
    p = person[i]
    k = len(i)
    gender = np.where(female[p], "F", "M").astype(object)
    gender[rng.random(k) < 0.05] = None
    birth = pc.strftime(_ts_array(birth_s[p]), format="%Y-%m-%d")
    birth = _mask(birth, rng.random(k) < 0.2)
    consent = np.where(rng.random(k) < 0.62, "Y", "N").astype(object)
    consent[rng.random(k) < 0.08] = None
    province = provinces[people["city_idx"][p]].copy()
    province[rng.random(k) < 0.1] = None
    crm = pa.table({
        "source_customer_id": pa.array(rec["sid"][i], pa.string()),
        "name": pa.array(rec["names"][i], pa.string()),
        "email": pa.array(rec["email_str"][i], pa.string()),
        "phone": pa.array(rec["phone_str"][i], pa.string()),
        "gender": pa.array(gender, pa.string()),
        "birth_date": birth,
        "city": pa.array(cities[people["city_idx"][p]], pa.string()),
        "province": pa.array(province, pa.string()),
        "signup_ts": _fmt_ts(rec["signup"][i], "%Y-%m-%d %H:%M:%S"),
        "consent_marketing": pa.array(consent, pa.string()),
        "linked_ids": pa.array(rec["linked"][i], pa.string()),
    })
    paths["crm_contacts"] = out / SOURCE_FILES["crm_contacts"]
    _write_csv(crm, paths["crm_contacts"])
    rows["crm_contacts"] = k

    # --- e-shop accounts (JSON lines; created_at ISO 8601 with offset)
    i = np.flatnonzero(src == 1)
    i = i[np.argsort(rec["sid"][i].astype(str), kind="stable")]
    p = person[i]
    k = len(i)
    created = pc.strftime(_ts_array(rec["signup"][i]), format="%Y-%m-%dT%H:%M:%S").to_numpy(zero_copy_only=False)
    gender = np.where(female[p], "female", "male").astype(object)
    gender[rng.random(k) < 0.3] = None
    nick = ("u_" + pd.Series(rng.integers(10**6, 10**8, k)).astype(str)).to_numpy(dtype=object)
    df = pd.DataFrame({
        "account_id": rec["sid"][i],
        "email": rec["email_str"][i],
        "mobile": rec["phone_str"][i],
        "real_name": rec["names"][i],
        "nickname": nick,
        "gender": gender,
        "created_at": pd.Series(created, dtype=object) + "+08:00",
        "city": cities[people["city_idx"][p]],
        "newsletter_opt_in": rng.random(k) < 0.45,
    })
    paths["eshop_accounts"] = out / SOURCE_FILES["eshop_accounts"]
    with open(paths["eshop_accounts"], "w", encoding="utf-8", newline="\n") as fh:
        for lo in range(0, k, 200_000):
            fh.write(df.iloc[lo:lo + 200_000].to_json(orient="records", lines=True, force_ascii=False))
    del df
    rows["eshop_accounts"] = k

    # --- loyalty cards (GBK CSV, Chinese headers, dates like 2024/3/5)
    i = np.flatnonzero(src == 2)
    i = i[np.argsort(rec["sid"][i].astype(str), kind="stable")]
    p = person[i]
    k = len(i)

    def ymd(seconds: np.ndarray) -> np.ndarray:
        d = pd.to_datetime(seconds, unit="s")
        return (pd.Series(d.year).astype(str) + "/" + pd.Series(d.month).astype(str) + "/"
                + pd.Series(d.day).astype(str)).to_numpy(dtype=object)

    city = cities[people["city_idx"][p]].copy()
    city_suffix = rng.random(k) < 0.3
    city[city_suffix] = (pd.Series(city[city_suffix], dtype=object) + "市").to_numpy(dtype=object)
    birth = ymd(birth_s[p])
    birth[rng.random(k) < 0.35] = None
    points = np.floor(rng.gamma(1.2, 900.0, k)).astype(np.int64)
    tier = np.select([points >= 5000, points >= 2000, points >= 800], ["钻石", "金卡", "银卡"], "普通")
    store = pd.DataFrame({
        "会员号": rec["sid"][i], "姓名": rec["names"][i], "手机": rec["phone_str"][i],
        "性别": np.where(female[p], "女", "男"), "生日": birth, "城市": city,
        "省份": provinces[people["city_idx"][p]], "注册日期": ymd(rec["signup"][i]),
        "积分": points, "等级": tier,
    })
    paths["store_cards"] = out / SOURCE_FILES["store_cards"]
    with open(paths["store_cards"], "w", encoding="gbk", newline="") as fh:
        for lo in range(0, max(k, 1), 200_000):
            store.iloc[lo:lo + 200_000].to_csv(fh, index=False, header=lo == 0, lineterminator="\n")
    rows["store_cards"] = k


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


# ----------------------------------------------------------------------------- experiments
def _run_experiments(rec: dict, purch: dict, o_person: np.ndarray, o_ts: np.ndarray,
                     rng: np.random.Generator) -> dict:
    """Assign units, then add the orders the treatment causes (conversion lift within the window)."""
    eshop_of = rec["eshop_of"]
    signup_of = np.full(len(eshop_of), np.iinfo(np.int64).max)
    ok = eshop_of >= 0
    signup_of[ok] = rec["signup"][eshop_of[ok]]
    # one sorted int64 key (person, time) answers "any order in the window" by binary search
    key = np.sort((o_person.astype(np.int64) << 32) + (o_ts - _EPOCH_START))
    assignments, added, info = [], [], []
    for e in EXPERIMENTS:
        start = int(np.datetime64(e["start"], "s").astype(np.int64))
        eligible = np.flatnonzero(ok & (signup_of < start))
        units = eligible[rng.random(len(eligible)) < e["unit_share"]]
        units = units[rng.permutation(len(units))]
        n_u = len(units)
        n_treat = int(round(e["observed_treatment_share"] * n_u))
        treat = np.zeros(n_u, dtype=bool)
        treat[:n_treat] = True
        treat = treat[rng.permutation(n_u)]
        a_ts = start + rng.integers(0, EXPERIMENT_ASSIGN_DAYS * DAY, n_u)
        w_end = a_ts + EXPERIMENT_WINDOW_DAYS * DAY
        # baseline: any order of the person inside [assigned, assigned + window)
        k_lo = np.searchsorted(key, (units.astype(np.int64) << 32) + (a_ts - _EPOCH_START))
        k_hi = np.searchsorted(key, (units.astype(np.int64) << 32) + (w_end - _EPOCH_START))
        base_conv = k_hi > k_lo
        p0 = float(base_conv.mean()) if n_u else 0.0
        q = p0 * e["rel_lift"] / (1 - p0) if p0 < 1 else 0.0
        gets = treat & ~base_conv & (rng.random(n_u) < q)
        add_ts = a_ts[gets] + rng.integers(600, EXPERIMENT_WINDOW_DAYS * DAY, gets.sum())
        add_ts = np.minimum(add_ts, _EPOCH_END - 60)
        add_amount = _spend_amount(purch["nu"][units[gets]], rng)
        added.append((units[gets], add_ts, add_amount, e["id"]))
        assignments.append((e["id"], units, treat, a_ts))
        info.append({
            "experiment_id": e["id"], "kind": e["kind"], "design_weights": e["weights"],
            "observed_treatment_share_target": e["observed_treatment_share"],
            "n_control": int((~treat).sum()), "n_treatment": int(treat.sum()),
            "metric": f"converted: any order (either channel, any source of the person) in "
                      f"[assigned_ts, assigned_ts + {EXPERIMENT_WINDOW_DAYS} days)",
            "true_rel_lift_conversion": e["rel_lift"],
            "baseline_conversion_rate_before_lift": p0,
            "true_abs_lift_conversion": p0 * e["rel_lift"],
            "added_orders": int(gets.sum()),
            "added_revenue_per_treatment_unit": float(add_amount.sum() / max(treat.sum(), 1)),
            "true_revenue_lift_per_unit_definition": "expected extra revenue per treatment unit = "
            "true_abs_lift_conversion x mean order amount of the treated; realised value above",
            "srm_expected": e["observed_treatment_share"] != e["weights"]["treatment"],
            **({"holdout": e["holdout"]} if "holdout" in e else {}),
        })
    return {"assignments": assignments, "added": added, "info": info}


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


def _write_experiments(out: Path, rec: dict, exp: dict, rng: np.random.Generator,
                       paths: dict, rows: dict) -> None:
    eid, unit, treat, ats = [], [], [], []
    for e_id, units, tr, a_ts in exp["assignments"]:
        eid.append(np.full(len(units), e_id, dtype=object))
        unit.append(units)
        treat.append(tr)
        ats.append(a_ts)
    eid, unit, treat, ats = (np.concatenate(x) for x in (eid, unit, treat, ats))
    # logging repeats: exact duplicate assignment rows (same unit, same arm, same time)
    dup = np.flatnonzero(rng.random(len(eid)) < 0.003)
    sel = np.r_[np.arange(len(eid)), dup]
    sel = sel[np.argsort(ats[sel], kind="stable")]
    tbl = pa.table({
        "experiment_id": pa.array(eid[sel], pa.string()),
        "source_customer_id": rec["sid_pa"].take(pa.array(rec["eshop_of"][unit[sel]])),
        "variant": pa.array(np.where(treat[sel], "treatment", "control"), pa.string()),
        "assigned_ts": _fmt_ts(ats[sel], "%Y-%m-%d %H:%M:%S"),
        "is_control": pa.array(~treat[sel]),
    })
    paths["experiments"] = out / SOURCE_FILES["experiments"]
    _write_csv(tbl, paths["experiments"])
    rows["experiments"] = len(sel)
    exp["duplicate_rows"] = int(len(dup))


def _write_surveys(out: Path, people: dict, rec: dict, purch: dict, rng: np.random.Generator,
                   paths: dict, rows: dict) -> None:
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
    sentiment = np.select([nps <= 6, nps <= 8], [0, 1], 2)
    comment = np.empty(k, dtype=object)
    for s_, texts in vocab.SURVEY_COMMENTS.items():
        hit = sentiment == s_
        comment[hit] = np.asarray(texts, dtype=object)[rng.integers(0, len(texts), hit.sum())]
    comment[comment == ""] = None
    nps_col = pa.array(np.where(rng.random(k) < 0.05, None, nps).astype(object), pa.int64())
    csat_col = pa.array(np.where(rng.random(k) < 0.1, None, csat).astype(object), pa.int64())
    order = np.argsort(ts, kind="stable")
    tbl = pa.table({
        "source_customer_id": rec["sid_pa"].take(pa.array(rec["crm_of"][person][order])),
        "response_ts": _fmt_ts(ts[order], "%Y-%m-%d %H:%M:%S"),
        "nps_score": nps_col.take(pa.array(order)),
        "csat": csat_col.take(pa.array(order)),
        "category": pa.array(np.asarray(vocab.SURVEY_CATEGORIES, dtype=object)[
            rng.integers(0, len(vocab.SURVEY_CATEGORIES), k)][order], pa.string()),
        "comment": pa.array(comment[order], pa.string()),
    })
    paths["surveys"] = out / SOURCE_FILES["surveys"]
    _write_csv(tbl, paths["surveys"], delimiter="\t")
    rows["surveys"] = k


# ----------------------------------------------------------------------------- truth
TRUTH_README = """# Ground truth of the sample data (never read by the pipeline)

Generated by `crmlib.sample.generate_sample` (`crm sample`). Person ids are `P0000001`...; every
file below uses them. Times are naive local time (Asia/Shanghai). Purchase-model time unit: week.

| file | what |
|---|---|
| `records.parquet` | source, source_customer_id, person_id for EVERY contact record of `crm_contacts`, `eshop_accounts`, `store_cards`. Order, touchpoint, event, experiment and survey ids are ids of these sources (`eshop_orders`, `touchpoints`, `web_events`, `experiments` -> `eshop_accounts`; `store_pos` -> `store_cards`; `surveys` -> `crm_contacts`), so this table resolves all of them. |
| `persons.parquet` | one row per true person: true name, gender, birth date, city, province, normalised email and phone, trap_id / trap_type, sources present, BG/NBD draws (`lambda_per_week`, `dropout_p`, `first_purchase_ts`, `alive_at_as_of`), Gamma-Gamma `nu` and `expected_spend` = p/nu, `n_orders_true` (sales incl. marketing and experiment orders, refunds excluded). |
| `traps.parquet` | trap_id, trap_type (`shared_phone_family`: relatives sharing one phone; `shared_company_email`: colleagues sharing one mailbox), shared_value (normalised phone digits / lower-case e-mail), person_id. Records of different persons in one trap must NOT be merged. |
| `orders.parquet` | one row per data row of `eshop_orders.csv` / `store_pos.csv`: source, row_number (1-based data row, header not counted), source_customer_id (also for rows whose id was blanked), person_id, true_order_ts, true_amount, origin (`organic` BG/NBD purchase, `marketing` journey conversion, `experiment` order caused by a treatment, `refund`), dirty (null or `duplicate_exact`, `duplicate_id_conflict`, `bad_date`, `bad_amount`, `future_date`, `missing_customer_id`, `repeat_without_id`), is_real_order (false only for the injected duplicate copies; the first row of a duplicate pair is the real one; both rows of `repeat_without_id` are real purchases). |
| `cookies.parquet` | anonymous_id -> person_id of every known cookie, its device, and whether `web_events` ever shows it together with a customer id (`stitched_in_events`). Cookies absent here belong to visitors who are nobody's customer. |
| `journeys.parquet` | marketing journeys: journey_id, person_id, start_date, channels (list), p_convert, p_without_<channel>, converted, conversion_ts, amount. |
| `channels.json` | causal channel model and the true incremental conversions per channel (definition inside). |
| `mmm_weekly.parquet` | week_start (Monday), channel, spend, adstock and Hill response of the paid channels, expected and realised incremental conversions of journeys started that week. |
| `experiments.json` | per experiment: design weights, arm sizes, metric definition, true relative / absolute lift on conversion, baseline rate, added orders and revenue per treated unit, whether SRM is expected, holdout campaign + channel. |
| `params.json` | every generating parameter (seed, size, window, BG/NBD r, alpha, a, b per week, Gamma-Gamma p, q, gamma, membership rates, dirty-row rates, refund rates, channel and campaign settings). |

Channel effects: a journey converts with probability 1 - (1 - base) * prod_c (1 - p_c) over the
distinct channels c that touched it. Each channel reaches the journey on one day within 7 days of
the journey start, with that day's reach share (so paid touches happen while the channel spends);
its touches fall on that day or the next; the conversion follows within 4 days of the last touch,
so a 30-day lookback covers every causing touch.
A realised conversion is incremental to channel c when it would vanish without c, using the same
uniform draw u: converted = u < P(all) and u >= P(all but c). `expected_incremental_conversions`
is the sum over journeys of P(all) - P(all but c).
"""


def _channel_lists(incl: np.ndarray, ch_names: list[str]) -> pa.Array:
    rows_, cols_ = np.nonzero(incl)
    offsets = np.r_[0, np.cumsum(incl.sum(axis=1))].astype(np.int32)
    values = pa.array(ch_names, pa.string()).take(pa.array(cols_))
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def _write_truth(truth_dir: Path, n: int, seed: int, people: dict, rec: dict, purch: dict,
                 mk: dict, exp: dict, amount_of_journey: np.ndarray, n_true_orders: np.ndarray) -> None:
    pq.write_table(pa.table({
        "source": pa.array(rec["src_names"][rec["src"]], pa.string()),
        "source_customer_id": rec["sid_pa"],
        "person_id": _person_ids(rec["person"]),
    }), truth_dir / "records.parquet")

    cities = np.array([c for c, _, _ in vocab.CITIES], dtype=object)
    provinces = np.array([p for _, p, _ in vocab.CITIES], dtype=object)
    trap = people["trap_id"]
    trap_type = np.where(trap < 0, None, np.where(people["trap_is_family"], "shared_phone_family",
                                                   "shared_company_email")).astype(object)
    has = rec["has"]
    first = np.where(purch["t0"] < _EPOCH_END, purch["t0"], np.iinfo(np.int64).min)
    first_ts = pa.array(first.astype("datetime64[s]"), mask=first == np.iinfo(np.int64).min)
    persons = pa.table({
        "person_id": _person_ids(np.arange(n)),
        "name": pa.array(people["name"], pa.string()),
        "gender": pa.array(np.where(people["female"], "F", "M"), pa.string()),
        "birth_date": _ts_array(_EPOCH_START + people["birth_day"].astype(np.int64) * DAY).cast(pa.date32()),
        "city": pa.array(cities[people["city_idx"]], pa.string()),
        "province": pa.array(provinces[people["city_idx"]], pa.string()),
        "email": pa.array(people["email"], pa.string()),
        "phone": pa.array(people["phone"].astype(str), pa.string()),
        "trap_id": pa.array(np.where(trap < 0, None, trap).astype(object), pa.int64()),
        "trap_type": pa.array(trap_type, pa.string()),
        "in_crm_contacts": pa.array(has[:, 0]), "in_eshop_accounts": pa.array(has[:, 1]),
        "in_store_cards": pa.array(has[:, 2]),
        "second_eshop_account": pa.array(rec["eshop2_of"] >= 0),
        "store_card_phone_changed": pa.array(rec["moved"]),
        "lambda_per_week": pa.array(purch["lam"]), "dropout_p": pa.array(purch["drop"]),
        "first_purchase_ts": first_ts, "alive_at_as_of": pa.array(purch["alive_at_end"]),
        "nu": pa.array(purch["nu"]),
        "expected_spend": pa.array(GAMMA_GAMMA["p"] / purch["nu"]),
        "n_orders_true": pa.array(n_true_orders.astype(np.int64)),
    })
    pq.write_table(persons, truth_dir / "persons.parquet")

    members = np.flatnonzero(trap >= 0)
    members = members[np.lexsort((members, trap[members]))]
    shared = np.where(people["trap_is_family"][members], people["phone"][members].astype(str),
                      people["co_email"][np.maximum(trap[members] - people["n_families"], 0)])
    pq.write_table(pa.table({
        "trap_id": pa.array(trap[members]), "trap_type": pa.array(trap_type[members], pa.string()),
        "shared_value": pa.array(shared, pa.string()),
        "person_id": _person_ids(members),
    }), truth_dir / "traps.parquet")

    # journeys, channels, weekly MMM truth
    ch_names = mk["ch_names"]
    incl = mk["incl"]
    nj = len(mk["j_day"])
    conv = mk["converted"]
    jt = {"journey_id": pa.array(np.arange(1, nj + 1)),
          "person_id": _person_ids(mk["j_person"]),
          "start_date": _ts_array(_EPOCH_START + mk["j_day"].astype(np.int64) * DAY).cast(pa.date32()),
          "channels": _channel_lists(incl, ch_names),
          "p_convert": pa.array(mk["p_all"])}
    for ci, ch in enumerate(ch_names):
        jt[f"p_without_{ch}"] = pa.array(mk["p_wo"][:, ci])
    jt["converted"] = pa.array(conv)
    jt["conversion_ts"] = pa.array(mk["conv_ts"].astype("datetime64[s]"), mask=~conv)
    jt["amount"] = pa.array(amount_of_journey, mask=~conv)
    pq.write_table(pa.table(jt), truth_dir / "journeys.parquet")

    gain = (mk["p_all"][:, None] - mk["p_wo"]) * incl
    channels = {
        "definition": "journey conversion probability = 1 - (1 - base) * prod over distinct channels c "
                      "in the journey of (1 - p_c). realised_incremental_conversions[c] = converted "
                      "journeys with u >= P(without c) (the conversion vanishes if c is removed, same "
                      "uniform draw u); expected_incremental_conversions[c] = sum over journeys of "
                      "P(all) - P(without c). Incremental revenue = amounts of those conversions. "
                      "Conversions are online orders (origin 'marketing' in orders.parquet) within "
                      f"{CONVERSION_DELAY_MAX_DAYS} days after the journey's last touch; each channel reaches "
                      f"the journey on one day within {JOURNEY_TOUCH_SPAN_DAYS} days of its start, with that "
                      "day's reach share (the response below). The "
                      "holdout campaign's effect is in experiments.json, not here.",
        "base_conversion": BASE_CONVERSION,
        "journeys": int(nj), "conversions": int(conv.sum()),
        "conversion_revenue": float(np.nansum(amount_of_journey)),
        "channels": {},
    }
    for ci, ch in enumerate(ch_names):
        c = CHANNELS[ch]
        inc = mk["incremental"][:, ci]
        rev = float(np.nansum(np.where(inc, amount_of_journey, 0.0)))
        entry = {
            "paid": c["paid"], "p_incremental": c["p"],
            "journeys_with_channel": int(incl[:, ci].sum()),
            "conversions_with_channel": int((incl[:, ci] & conv).sum()),
            "expected_incremental_conversions": float(gain[:, ci].sum()),
            "realised_incremental_conversions": int(inc.sum()),
            "realised_incremental_revenue": rev,
            "campaigns": [k for k, v in CAMPAIGNS.items() if v[0] == ch],
        }
        if c["paid"]:
            spend_total = float(mk["spend"][ch].sum())
            entry.update({"spend": spend_total, "adstock_theta": c["theta"], "hill_k": c["hill_k"],
                          "hill_s": c["hill_s"], "q_max": c["q_max"],
                          "true_incremental_roas": rev / spend_total if spend_total else None,
                          "response": "share of journeys reached on day t = q_max * x^s / (x^s + k^s), "
                                      "x = geometric adstock (theta) of daily spend / its mean"})
        else:
            entry.update({"reach_share_per_journey": c["q"], "cost_per_send": c["cost_per_send"]})
        channels["channels"][ch] = entry
    (truth_dir / "channels.json").write_text(json.dumps(channels, indent=2, ensure_ascii=False), encoding="utf-8")

    week = mk["j_day"] // 7
    n_weeks = mk["n_days"] // 7 + 1
    frames = []
    for ci, ch in enumerate(ch_names):
        c = CHANNELS[ch]
        sp = np.zeros(n_weeks)
        if c["paid"]:
            np.add.at(sp, np.arange(mk["n_days"]) // 7, mk["spend"][ch])
        frames.append(pd.DataFrame({
            "week_start": (np.datetime64(WINDOW_START) + np.arange(n_weeks) * 7).astype("datetime64[s]"),
            "channel": ch, "spend": np.round(sp, 2),
            "expected_incremental_conversions": np.bincount(week, weights=gain[:, ci], minlength=n_weeks),
            "realised_incremental_conversions": np.bincount(week, weights=mk["incremental"][:, ci].astype(float),
                                                            minlength=n_weeks),
        }))
    pq.write_table(pa.Table.from_pandas(pd.concat(frames, ignore_index=True), preserve_index=False),
                   truth_dir / "mmm_weekly.parquet")

    info = exp["info"]
    (truth_dir / "experiments.json").write_text(json.dumps(
        {"window_days": EXPERIMENT_WINDOW_DAYS, "assignment_days": EXPERIMENT_ASSIGN_DAYS,
         "unit": "eshop_accounts source_customer_id (primary account of the person)",
         "duplicate_assignment_rows": exp.get("duplicate_rows", 0),
         "experiments": info}, indent=2, ensure_ascii=False))

    params = {
        "seed": seed, "customers": n, "as_of": AS_OF, "window_start": WINDOW_START,
        "timezone": "Asia/Shanghai", "currency": "CNY",
        "bgnbd": {**BGNBD, "time_unit": "W", "note": "lambda ~ Gamma(r, rate alpha) per week (capped at 3), "
                  "dropout p ~ Beta(a, b); first purchase at first_purchase_ts (birth), then Poisson "
                  "purchasing while alive, dropout after each purchase. Marketing and experiment orders "
                  "come on top of these organic purchases."},
        "gamma_gamma": {**GAMMA_GAMMA, "note": "nu ~ Gamma(q, rate gamma); amount ~ Gamma(p, rate nu), "
                        "rounded to 0.01, at least 1.0"},
        "never_buyer_share": NEVER_BUYER_SHARE, "membership": MEMBERSHIP,
        "dirty_rates": DIRTY_RATES, "refund_rates": REFUND_RATE,
        "base_conversion": BASE_CONVERSION,
        "channels": {k: {kk: vv for kk, vv in v.items()} for k, v in CHANNELS.items()},
        "campaigns": {k: {"channel": v[0], "first_day": v[1], "last_day": v[2], "weight": v[3]}
                      for k, v in CAMPAIGNS.items()},
        "journeys_per_eshop_customer_day": JOURNEYS_PER_ESHOP_CUSTOMER_DAY,
        "promo_spend_boost": PROMO_SPEND_BOOST,
        "journey_touch_span_days": JOURNEY_TOUCH_SPAN_DAYS,
        "conversion_delay_max_days": CONVERSION_DELAY_MAX_DAYS,
        "experiments": EXPERIMENTS,
        "source_files": SOURCE_FILES,
    }
    (truth_dir / "params.json").write_text(json.dumps(params, indent=2, ensure_ascii=False), encoding="utf-8")
    (truth_dir / "README.md").write_text(TRUTH_README)


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
        items = (1 + rng.poisson(np.clip(np.abs(o["base_amount"]) / 300.0, 0.1, 5.0)))[br]
        extra = {"items": items}
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
    del o_person, o_ts, o_online, o_kind, o_journey, o_amount, acct
    _release_memory()

    tp = _write_touchpoints(out, rec, mk, exp, streams[8], paths, rows)
    _release_memory()
    _write_events(out, truth_dir, people, rec, tp, online_rows, streams[11], paths, rows)
    _release_memory()
    _write_spend(out, mk, tp, paths, rows, streams[7])
    _write_experiments(out, rec, exp, streams[9], paths, rows)
    _write_surveys(out, people, rec, purch, streams[10], paths, rows)
    _write_truth(truth_dir, n, seed, people, rec, purch, mk, exp, amount_of_journey,
                 n_true_orders)
    paths["truth"] = truth_dir
    return SampleSummary(out_dir=out, paths=paths, rows=rows, customers=n, seed=seed,
                         seconds=time.perf_counter() - t_start)


def _person_ids(person: np.ndarray) -> pa.Array:
    return _ids("P", np.asarray(person) + 1, 7)
