"""Contacts: true persons, their records in the three contact systems (CRM, e-shop, loyalty cards)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import vocab
from ._common import (AS_OF, DAY, SOURCE_FILES, _EPOCH_END, _EPOCH_START, _day, _fmt_ts, _group_rank, _ids,
                      _mask, _ts_array, _write_csv)

MEMBERSHIP = {"crm_contacts": 0.6, "eshop_accounts": 0.9, "store_cards": 0.45,
              "second_eshop_account": 0.02}


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
