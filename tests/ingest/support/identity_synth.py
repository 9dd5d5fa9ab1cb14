"""Synthetic contact records with known truth and identity traps, for testing and measuring
:func:`crmlib.ingest.identity.resolve_identities` without depending on the sample generator.

The traps are the two the issue names:

* households share one phone: family members (often the same surname, different given names,
  different birth dates) all give the household phone;
* companies share one email: colleagues (different names) give the company's shared mailbox
  in the CRM.

Same-person records differ by name typos (one character), missing fields and the odd wrong birth
date; some carry linked ids (``<source>:<id>``) pointing at the same person's record elsewhere.
Values are already normalized the way ingest hands them over (email lower-case, phone E.164).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["make_identity_records"]

_SURNAMES = list(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚"
    "卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
_GIVEN = list(
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍鹏辉红宇斌波建国飞云凤欣浩宁亮晨晓丹雪琳婷慧颖佳俊峰"
    "鑫博文昊天瑞雨思嘉子轩梓涵一诺欣怡浩然宇航雅琪"
)
_LATIN_FIRST = ["james", "mary", "john", "linda", "david", "susan", "michael", "karen", "peter", "emma",
                "lucas", "olivia", "daniel", "sophia", "kevin", "grace", "tony", "amy", "eric", "lily"]
_LATIN_LAST = ["smith", "chan", "wong", "lee", "brown", "taylor", "wilson", "martin", "clark", "lewis",
               "walker", "young", "king", "scott", "green", "baker", "adams", "nelson", "hill", "ng"]
_CITIES = ["上海", "北京", "广州", "深圳", "杭州", "成都", "南京", "武汉", "西安", "苏州",
           "天津", "重庆", "长沙", "郑州", "青岛", "宁波", "厦门", "合肥", "昆明", "沈阳"]
_DOMAINS = ["qq.com", "163.com", "126.com", "gmail.com", "outlook.com", "sina.com", "foxmail.com"]

SOURCES = ("crm", "eshop", "store_cards")


def _zipf_choice(rng: np.random.Generator, n_items: int, size: int, s: float = 1.0) -> np.ndarray:
    weights = 1.0 / np.arange(1, n_items + 1) ** s
    return rng.choice(n_items, size=size, p=weights / weights.sum())


def _typo(name: str, rng: np.random.Generator) -> str:
    """One-character edit: a Chinese given-name character or a Latin letter replaced."""
    if not name:
        return name
    if name.isascii():
        pos = int(rng.integers(0, len(name)))
        if name[pos] == " ":
            pos = max(pos - 1, 0)
        return name[:pos] + "abcdefghijklmnopqrstuvwxyz"[int(rng.integers(0, 26))] + name[pos + 1:]
    pos = int(rng.integers(1, len(name))) if len(name) > 1 else 0
    return name[:pos] + _GIVEN[int(rng.integers(0, len(_GIVEN)))] + name[pos + 1:]


def make_identity_records(
    n_persons: int = 5_000,
    *,
    seed: int = 0,
    household_share: float = 0.10,
    company_share: float = 0.04,
    orders_only_share: float = 0.05,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generate contact records of ``n_persons`` people across three sources, plus truth.

    Parameters
    ----------
    n_persons : int
        Number of distinct people with contact records.
    seed : int
        Random seed; the output is deterministic for a seed.
    household_share : float
        Share of people living in a household of 2-4 that shares one phone (trap).
    company_share : float
        Share of people working at a company whose shared mailbox they give in the CRM (trap).
    orders_only_share : float
        Extra guest-checkout ids (source ``web_orders``, every attribute null), relative to
        ``n_persons``; each is a person of its own.

    Returns
    -------
    records : DataFrame
        source, source_customer_id, name, email, phone, gender, birth_date, city, linked_ids.
    truth : DataFrame
        source, source_customer_id, person_id.
    """
    rng = np.random.default_rng(seed)
    n = int(n_persons)
    person = np.arange(n)

    latin = rng.random(n) < 0.12
    surname_idx = _zipf_choice(rng, len(_SURNAMES), n, 0.8)
    given_len = np.where(rng.random(n) < 0.55, 2, 1)
    given_a = rng.integers(0, len(_GIVEN), n)
    given_b = rng.integers(0, len(_GIVEN), n)
    gender = np.where(rng.random(n) < 0.5, "F", "M")
    birth = np.datetime64("1950-01-01") + rng.integers(0, 365 * 55, n).astype("timedelta64[D]")
    city_idx = _zipf_choice(rng, len(_CITIES), n, 0.7)
    phone_num = rng.permutation(np.unique(rng.integers(3 * 10**9, 10**10, int(n * 1.1) + 10)))[:n]
    phone = np.char.add("+861", phone_num.astype(str))
    domain = np.array(_DOMAINS)[rng.integers(0, len(_DOMAINS), n)]
    email = np.char.add(np.char.add(np.char.add("u", rng.permutation(n * 7)[:n].astype(str)), "@"), domain)
    work_email = np.full(n, None, dtype=object)

    # Households: consecutive blocks of people share the first member's phone, city, and mostly surname.
    in_house = rng.random(n) < household_share
    house_members = person[in_house]
    sizes = rng.integers(2, 5, len(house_members))
    i = 0
    households = []
    for size in sizes:
        block = house_members[i:i + size]
        households.append(block)
        if len(block) < 2:
            break
        head = block[0]
        phone[block] = phone[head]
        city_idx[block] = city_idx[head]
        same_surname = block[rng.random(len(block)) < 0.7]
        surname_idx[same_surname] = surname_idx[head]
        latin[block] = latin[head]
        i += size
        if i >= len(house_members):
            break

    # Companies: groups of 3-15 colleagues with one shared mailbox.
    in_company = person[rng.random(n) < company_share]
    i, company_no = 0, 0
    while i < len(in_company):
        size = int(rng.integers(3, 16))
        block = in_company[i:i + size]
        work_email[block] = f"info@company{company_no}.cn"
        company_no += 1
        i += size

    latin_first = np.array(_LATIN_FIRST)[rng.integers(0, len(_LATIN_FIRST), n)]
    latin_last = np.array(_LATIN_LAST)[surname_idx % len(_LATIN_LAST)]
    surnames = np.array(_SURNAMES)[surname_idx]
    given = np.where(given_len == 2,
                     np.char.add(np.array(_GIVEN)[given_a], np.array(_GIVEN)[given_b]),
                     np.array(_GIVEN)[given_a])
    latin_name = np.char.add(np.char.add(latin_first, " "), latin_last)
    name = np.where(latin, latin_name, np.char.add(surnames, given)).astype(object)
    # Relatives never share a full name (a father and son both called 王伟 are beyond any matcher).
    for block in households:
        seen = set()
        for member in block:
            while name[member] in seen:
                name[member] = name[member] + _GIVEN[int(rng.integers(0, len(_GIVEN)))]
            seen.add(name[member])

    # Which systems know each person; everyone is in at least one.
    present = np.stack([rng.random(n) < p for p in (0.7, 0.55, 0.45)], axis=1)
    none = ~present.any(axis=1)
    present[none, rng.integers(0, 3, none.sum())] = True

    frames = []
    ids = {}
    # field presence per source: name, email, phone, gender, birth_date, city
    presence = {
        "crm": (0.97, 0.90, 0.95, 0.85, 0.75, 0.85),
        "eshop": (0.90, 1.00, 0.95, 0.60, 0.45, 0.70),  # SMS-verified accounts
        "store_cards": (0.97, 0.15, 0.99, 0.90, 0.85, 0.90),
    }
    for s_idx, source in enumerate(SOURCES):
        who = person[present[:, s_idx]]
        m = len(who)
        prefix = {"crm": "C", "eshop": "E", "store_cards": "S"}[source]
        sid = np.char.add(prefix, (rng.permutation(m * 3)[:m] + 100000).astype(str))
        ids[source] = pd.Series(sid, index=who)
        p_name, p_email, p_phone, p_gender, p_birth, p_city = presence[source]
        rec_email = email[who].astype(object)
        if source == "crm":
            has_work = np.array([w is not None for w in work_email[who]])
            rec_email[has_work] = work_email[who][has_work]
        rec_name = name[who].astype(object)
        typo = rng.random(m) < 0.05
        for j in np.flatnonzero(typo):
            rec_name[j] = _typo(rec_name[j], rng)
        rec_birth = birth[who].copy()
        wrong = rng.random(m) < 0.01
        rec_birth[wrong] = rec_birth[wrong] + rng.integers(1, 30, wrong.sum()).astype("timedelta64[D]")
        # People change numbers, move and keep several mailboxes: same-person records can disagree.
        rec_phone = phone[who].astype(object)
        changed = rng.random(m) < 0.01
        rec_phone[changed] = np.char.add("+8615", rng.integers(10**8, 10**9, changed.sum()).astype(str))
        rec_city = np.array(_CITIES)[city_idx[who]].astype(object)
        moved = rng.random(m) < 0.02
        rec_city[moved] = np.array(_CITIES)[rng.integers(0, len(_CITIES), moved.sum())]
        other_mail = (rng.random(m) < 0.02) & (rec_email != None)  # noqa: E711
        rec_email[other_mail] = np.char.add(np.char.add("x", rng.integers(10**6, 10**8, other_mail.sum()).astype(str)),
                                            "@139.com")
        frame = pd.DataFrame({
            "source": source,
            "source_customer_id": sid,
            "name": np.where(rng.random(m) < p_name, rec_name, None),
            "email": np.where(rng.random(m) < p_email, rec_email, None),
            "phone": np.where(rng.random(m) < p_phone, rec_phone, None),
            "gender": np.where(rng.random(m) < p_gender, gender[who].astype(object), None),
            "birth_date": pd.Series(rec_birth).where(rng.random(m) < p_birth),
            "city": np.where(rng.random(m) < p_city, rec_city, None),
            "person_id": who,
        })
        frames.append(frame)

    # Linked ids: some e-shop accounts name the CRM id, some loyalty cards name the e-shop account.
    for frame, (target, p_link) in zip(frames[1:], [("crm", 0.35), ("eshop", 0.15)]):
        target_ids = ids[target]
        has_target = frame["person_id"].isin(target_ids.index).to_numpy()
        use = has_target & (rng.random(len(frame)) < p_link)
        linked = np.full(len(frame), None, dtype=object)
        linked[use] = [f"{target}:{target_ids[p]}" for p in frame["person_id"].to_numpy()[use]]
        frame["linked_ids"] = linked
    frames[0]["linked_ids"] = None

    n_guest = int(round(n * orders_only_share))
    guests = pd.DataFrame({
        "source": "web_orders",
        "source_customer_id": np.char.add("G", np.arange(n_guest).astype(str)),
        "person_id": np.arange(n, n + n_guest),
    })
    contacts = pd.concat(frames, ignore_index=True)
    # As in real exports that were linked at all: every record of a person seen more than once shares
    # an email or phone with another of that person's records (else it gets the person's phone).
    shares = np.zeros(len(contacts), dtype=bool)
    for col in ("email", "phone"):
        has = contacts[col].notna().to_numpy()
        size = contacts.groupby(["person_id", col], dropna=False)[col].transform("size").to_numpy()
        shares |= has & (size > 1)
    shares |= contacts["linked_ids"].notna().to_numpy()
    linked_targets = set(contacts["linked_ids"].dropna())
    shares |= (contacts["source"] + ":" + contacts["source_customer_id"]).isin(linked_targets).to_numpy()
    n_rec = contacts.groupby("person_id")["source"].transform("size").to_numpy()
    lonely = (n_rec > 1) & ~shares
    contacts.loc[lonely, "phone"] = phone[contacts.loc[lonely, "person_id"].to_numpy()]
    out = pd.concat([contacts, guests], ignore_index=True)
    for col in ("name", "email", "phone", "gender", "city", "linked_ids"):
        out[col] = out[col].astype("object").where(out[col].notna(), None)
    out["birth_date"] = pd.to_datetime(out["birth_date"]).dt.date
    out["birth_date"] = out["birth_date"].astype("object").where(out["birth_date"].notna(), None)
    truth = out[["source", "source_customer_id", "person_id"]].copy()
    records = out.drop(columns="person_id")
    return records, truth
