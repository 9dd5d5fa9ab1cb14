"""A small multi-source fixture with known answers, for the ingest tests (not used by the pipeline).

:func:`write_fixture` writes one file per kind into a folder - covering GBK with Chinese headers,
phone and email variants, duplicate order ids, identical rows without an id, bad dates and amounts,
future timestamps, a malformed CSV line, refunds, anonymous events - and returns validated params.
The expected counts are in :data:`EXPECTED`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from crmlib.params import validate_params

__all__ = ["write_fixture", "stand_in_resolver", "EXPECTED", "NOW", "SURVEY_COMMENT"]

# the run's wall-clock time for the fixture (aware UTC); 2026-07-01 08:00 in Asia/Shanghai
NOW = pd.Timestamp("2026-07-01T00:00:00Z").to_pydatetime()

CRM_CSV = """customer_id,name,email,phone,gender,city,province,signup_ts,consent,loyalty_tier,linked_ids,favourite_colour
C1,Wang Wei, Wang.Wei@Example.com ,138 0013 8000,M,Shanghai,Shanghai,2025-01-05 10:00:00,yes,gold,cards:K1,red
C2,Li Na,li.na@example.com,+86 13900139000,F,Beijing,Beijing,2025/02/01 09:30,no,,,blue
C3,Zhang San,not-an-email,12345,M,Shenzhen,Guangdong,20250301,yes,silver,,green
C4,John Smith,john@example.com,+1 650 253 0000,M,Hangzhou,Zhejiang,2025-04-01T08:00:00+00:00,true,,,
C4,John Smith,john@example.com,+1 650 253 0000,M,Hangzhou,Zhejiang,2025-04-01T08:00:00+00:00,true,,,
,Nobody,nobody@example.com,,,,,,,,,
"""
# GBK with Chinese headers, mapped in params
CARDS_ROWS = [("会员号", "姓名", "手机", "城市"), ("K1", "王伟", "13800138000", "上海"),
              ("K2", "赵六", "0086-137-0013-7000", "广州"), ("K3", "钱七", "", "南京")]
ORDERS_CSV = """order_id,customer_id,order_ts,amount,currency,channel,store
O1,C1,2026-01-03 10:00:00,"¥1,234.50",,online,
O2,C1,2026/02/10 12:30,99.5,CNY,online,
O2,C1,2026/02/10 12:30,99.5,CNY,online,
O3,C2,2026-02-11T09:00:00Z,-20,CNY,online,
O4,C2,not a date,10,CNY,online,
O5,C3,2026-03-01,abc,CNY,online,
O6,,2026-03-02,10,CNY,online,
O7,C3,2030-01-01,10,CNY,online,
,C4,2026-04-01 10:00,25,CNY,app,
,C4,2026-04-01 10:00,25,CNY,app,
O8,C4,2026-04-02 10:00,25,CNY,app,extra,field
O9,C5,20260405,5000,CNY,online,
"""
STORE_ORDERS_CSV = """card_no,ts,total,shop
K1,2026-05-01 15:00,300,S01
K2,2026-05-02 16:00,1e400,S02
K2,2026-05-03 16:00,200,S02
"""
EVENTS = [
    {"event_ts": "2026-05-01 10:00:00", "event_type": "page_view", "anonymous_id": "A1", "page": "/"},
    {"event_ts": "2026-05-01 10:05:00", "event_type": "login", "anonymous_id": "A1", "customer_id": "C2"},
    {"event_ts": "2026-05-01 10:06:00", "event_type": "page_view", "anonymous_id": "A2", "page": "/x"},
    {"event_ts": "2026-05-01 10:06:00", "event_type": "page_view", "anonymous_id": "A2", "page": "/x"},
    {"event_ts": "2026-05-01 10:07:00", "event_type": "page_view", "page": "/y"},
]
TOUCH_CSV = """touch_ts,channel,customer_id,anonymous_id,campaign_id,cost
2026-04-30 09:00,email,C1,,spring,0.01
2026-04-30 09:00,paid_search,,A1,spring,1.5
2026-04-30 09:00,paid_search,,A9,spring,-3
"""
# a comment that names a person and a phone: only its words may reach the tables
SURVEY_COMMENT = "Great service, thanks to Mary! Call 13800138000"
SPEND_TSV = "date\tchannel\tcost\tcampaign_id\n2026-04-30\temail\t100\tspring\n2026-04-30\tpaid_search\t-5\tspring\n2099-01-01\temail\t1\tspring\n"

EXPECTED = {
    # source: rows_read, loaded, quarantined, duplicates
    "crm": (6, 4, 1, 1),
    "cards": (3, 3, 0, 0),
    "orders": (12, 6, 5, 1),
    "store_orders": (3, 2, 1, 0),
    "web_events": (5, 4, 1, 0),
    "touches": (3, 2, 1, 0),
    "ad_spend": (3, 1, 2, 0),
    "ab": (3, 2, 0, 1),
    "nps": (3, 2, 1, 0),
}


def write_fixture(folder: str | Path, **overrides) -> dict:
    """Write the fixture files into ``folder`` and return validated params pointing at them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "crm.csv").write_text(CRM_CSV, encoding="utf-8")
    (folder / "cards.csv").write_bytes(("\n".join(",".join(r) for r in CARDS_ROWS) + "\n").encode("gbk"))
    (folder / "orders.csv").write_text(ORDERS_CSV, encoding="utf-8")
    (folder / "store_orders.csv").write_text(STORE_ORDERS_CSV, encoding="utf-8")
    (folder / "events.jsonl").write_text("\n".join(json.dumps(e) for e in EVENTS) + "\n", encoding="utf-8")
    (folder / "touches.csv").write_text(TOUCH_CSV, encoding="utf-8")
    (folder / "spend.tsv").write_text(SPEND_TSV, encoding="utf-8")
    pd.DataFrame({"exp": ["e1", "e1", "e1"], "customer_id": ["C1", "C2", "C1"],
                  "variant": ["control", "treatment", "control"],
                  "assigned_ts": ["2026-04-01", "2026-04-01", "2026-04-01"]}).to_parquet(folder / "ab.parquet")
    pd.DataFrame({"customer_id": ["C1", "C2", "K2"], "response_ts": ["2026-05-01", "2026-05-02", "2026-05-03"],
                  "nps_score": ["9", "11", "7"], "comment": [SURVEY_COMMENT, "meh", "ok"]}).to_excel(
        folder / "nps.xlsx", index=False)
    raw = {
        "run": {"name": "fixture", "timezone": "Asia/Shanghai", "currency": "CNY", "output_dir": "out"},
        "sources": [
            {"name": "crm", "kind": "contacts", "path": "crm.csv",
             "columns": {"customer_id": "source_customer_id", "consent": "consent_marketing"}},
            {"name": "cards", "kind": "contacts", "path": "cards.csv", "encoding": "gbk",
             "columns": {"会员号": "source_customer_id", "姓名": "name", "手机": "phone", "城市": "city"}},
            {"name": "orders", "kind": "orders", "path": "orders.csv", "id_source": "crm",
             "columns": {"customer_id": "source_customer_id", "store": "store_id"}},
            {"name": "store_orders", "kind": "orders", "path": "store_orders.csv", "id_source": "cards",
             "columns": {"card_no": "source_customer_id", "ts": "order_ts", "total": "amount",
                         "shop": "store_id"}},
            {"name": "web_events", "kind": "events", "path": "events.jsonl", "id_source": "crm",
             "columns": {"customer_id": "source_customer_id"}},
            {"name": "touches", "kind": "touchpoints", "path": "touches.csv", "id_source": "crm",
             "columns": {"customer_id": "source_customer_id"}},
            {"name": "ad_spend", "kind": "spend", "path": "spend.tsv"},
            {"name": "ab", "kind": "experiments", "path": "ab.parquet", "id_source": "crm",
             "columns": {"exp": "experiment_id", "customer_id": "source_customer_id"}},
            {"name": "nps", "kind": "surveys", "path": "nps.xlsx", "id_source": "crm",
             "columns": {"customer_id": "source_customer_id"}},
        ],
        "ingest": {"tags": {"high_value": "revenue >= 1000", "lapsed": "orders == 0"},
                   "identity": {"method": "deterministic"}},
    }
    for key, value in overrides.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return validate_params(raw, folder)


@dataclass
class StandInResult:
    """What :func:`stand_in_resolver` returns: the attributes the stage reads from an IdentityResult."""

    identity_map: pd.DataFrame
    links_by_rule: pd.DataFrame
    n_records: int


def stand_in_resolver(calls: list | None = None):
    """A deterministic stand-in for ``resolve_identities`` (tests only): union-find over shared email,
    phone and linked ids; key = sha256(salt + smallest ``source:id``)[:16]. Records each call in ``calls``.
    """
    def resolve(engine, records, *, method, match_threshold, salt):
        df = records.to_pandas() if hasattr(records, "to_pandas") else records
        df = df.reset_index(drop=True)
        if calls is not None:
            calls.append({"records": df, "method": method, "match_threshold": match_threshold, "salt": salt})
        ids = (df.source + ":" + df.source_customer_id).tolist()
        parent = list(range(len(df)))

        def find(i):
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        rules = {}
        owner: dict[tuple[str, str], int] = {}
        index = {k.lower(): i for i, k in enumerate(ids)}
        for i, row in df.iterrows():
            keys = [("email", row.email), ("phone", row.phone)]
            keys += [("linked_id", v.strip().lower()) for v in str(row.linked_ids or "").split(";") if v.strip()]
            for rule, value in keys:
                if value is None or (isinstance(value, float) and pd.isna(value)):
                    continue
                if rule == "linked_id":
                    j = index.get(value)
                else:
                    j = owner.setdefault((rule, value), i)
                if j is None or find(i) == find(j):
                    continue
                parent[find(i)] = find(j)
                rules[rule] = rules.get(rule, 0) + 1
        roots = [find(i) for i in range(len(df))]
        smallest: dict[int, str] = {}
        for r, k in zip(roots, ids):
            smallest[r] = min(smallest.get(r, k), k)
        keys = [hashlib.sha256((salt + smallest[r]).encode()).hexdigest()[:16] for r in roots]
        return StandInResult(
            pd.DataFrame({"source": df.source, "source_customer_id": df.source_customer_id, "customer_key": keys,
                          "match_rule": ["linked" if roots.count(r) > 1 else "singleton" for r in roots]}),
            pd.DataFrame({"rule": list(rules), "links": list(rules.values())}), len(df))
    return resolve
