"""crmlib.ingest.validate: each row loaded, quarantined with a reason, or dropped as a duplicate."""

from __future__ import annotations

import datetime as dt

import ibis
import pandas as pd
import pytest

from crmlib.engine import Engine
from crmlib.ingest.readers import read_source
from crmlib.ingest.validate import identical_rows_kept, reason_check, run_now_local, validate_source
from crmlib.params import complete_source

NOW = dt.datetime(2026, 7, 1, 8, 0)  # naive local


@pytest.fixture
def engine(tmp_path):
    with Engine(tmp_path / "run", database=":memory:") as eng:
        yield eng


def _decide(engine, tmp_path, text, kind="orders", tolerance=24.0, **src):
    p = tmp_path / f"{kind}.csv"
    p.write_text(text, encoding="utf-8")
    raw = read_source(engine, complete_source({"name": kind, "kind": kind, "path": str(p), **src}))
    vs = validate_source(raw, timezone="Asia/Shanghai", currency="CNY", now_local=NOW,
                         future_tolerance_hours=tolerance)
    t = engine.scratch(f"d_{kind}", vs.table)
    return vs, t, engine.to_pandas(t.order_by("_row_number")).set_index("_row_number")


def test_reasons_per_row(engine, tmp_path):
    text = ("order_id,source_customer_id,order_ts,amount\n"
            "O1,C1,2026-01-01,10\n"      # 1 loaded
            "O2,C1,garbage,10\n"         # 2 bad date
            "O3,C1,2026-01-01,ten\n"     # 3 bad number
            "O4,,2026-01-01,10\n"        # 4 missing customer id
            "O5,C1,,10\n"                # 5 missing order_ts (missing wins over bad date)
            "O6,C1,2026-07-02 07:00,10\n"  # 6 23 h ahead: inside the 24 h tolerance
            "O7,C1,2026-07-02 09:00,10\n"  # 7 25 h ahead: future
            "O8,C1,2026-01-01,-5\n")     # 8 refund: loaded
    _, _, df = _decide(engine, tmp_path, text)
    assert df.loc[[1, 6, 8], "_status"].tolist() == ["loaded"] * 3
    reasons = {k: (None if pd.isna(v) else reason_check(v)) for k, v in df["_reason"].items()}
    assert "set date_format: on source orders" in df.loc[2, "_reason"]  # the explanation says how to fix it
    assert df.loc[3, "_reason"].startswith("bad_number:amount (amount is not a number")
    assert reasons == {1: None, 2: "bad_date:order_ts", 3: "bad_number:amount",
                       4: "missing_value:source_customer_id", 5: "missing_value:order_ts",
                       6: None, 7: "future_timestamp:order_ts", 8: None}
    assert df.loc[3, "_raw"] == "O3,C1,2026-01-01,ten"
    assert pd.isna(df.loc[1, "_raw"])
    assert df.loc[1, "currency"] == "CNY"  # from run.currency when the file has none


def test_future_tolerance_is_a_parameter(engine, tmp_path):
    text = "source_customer_id,order_ts,amount\nC1,2026-07-01 10:00,1\n"
    _, _, df = _decide(engine, tmp_path, text, tolerance=1.0)
    assert df.loc[1, "_reason"] == "future_timestamp:order_ts"


def test_run_now_local():
    now = dt.datetime(2026, 7, 1, 0, 0, tzinfo=dt.timezone.utc)
    assert run_now_local("Asia/Shanghai", now) == dt.datetime(2026, 7, 1, 8, 0)


def test_duplicate_order_id_keeps_first_by_file_row(engine, tmp_path):
    text = ("order_id,source_customer_id,order_ts,amount\n"
            "O1,C1,bad,10\n"              # 1 quarantined: does not count as the first O1
            "O1,C1,2026-01-02,20\n"       # 2 first valid O1: loaded
            "O1,C1,2026-01-02,20\n"       # 3 duplicate (exact repeat)
            "O1,C9,2026-01-05,99\n"       # 4 duplicate (same id, other content)
            "O2,C1,2026-01-02,20\n")      # 5 loaded
    _, _, df = _decide(engine, tmp_path, text)
    assert df["_status"].tolist() == ["quarantined", "loaded", "duplicate", "duplicate", "loaded"]


def test_identical_rows_without_id_are_kept_and_counted(engine, tmp_path):
    text = ("order_id,source_customer_id,order_ts,amount\n"
            ",C1,2026-01-02,20\n,C1,2026-01-02,20\n,C1,2026-01-02,20\n,C2,2026-01-02,20\nO1,C1,2026-01-02,20\n")
    vs, t, df = _decide(engine, tmp_path, text)
    assert (df["_status"] == "loaded").all()
    value_cols = [c for c in t.columns if not c.startswith("_")]
    assert int(identical_rows_kept(t, "orders", value_cols).execute()) == 2  # two repeats of the first row
    # the stored row hash only narrows the search: without it, or with every hash colliding, the same count
    assert int(identical_rows_kept(t.drop("_row_hash"), "orders", value_cols).execute()) == 2
    collide = t.mutate(_row_hash=ibis.literal(7, type="int64"))
    assert int(identical_rows_kept(collide, "orders", value_cols).execute()) == 2


def test_identical_rows_of_a_kind_without_id(engine, tmp_path):
    text = ("event_ts,event_type,anonymous_id,page\n"
            "2026-05-01 10:00,view,A1,/\n2026-05-01 10:00,view,A1,/\n2026-05-01 10:00,view,A1,\n"
            "2026-05-01 10:00,view,A1,\n2026-05-01 10:00,view,A1,\n2026-05-01 10:01,view,A1,/\n")
    _, t, df = _decide(engine, tmp_path, text, kind="events")
    assert (df["_status"] == "loaded").all() and df["_row_hash"].notna().all()
    value_cols = [c for c in t.columns if not c.startswith("_")]
    assert int(identical_rows_kept(t, "events", value_cols).execute()) == 3  # NULL pages compare equal


def test_contacts_exact_repeat_dropped_but_same_id_other_content_kept(engine, tmp_path):
    text = ("source_customer_id,name,email\nC1,Wang,w@x.com\nC1,Wang,w@x.com\nC1,Wang,w2@x.com\n")
    _, _, df = _decide(engine, tmp_path, text, kind="contacts")
    assert df["_status"].tolist() == ["loaded", "duplicate", "loaded"]


def test_whole_row_repeats_stored_once(engine, tmp_path):
    text = ("source_customer_id,name,email\nC1,Wang,\n,Nobody,n@x.com\nC1,Wang,\n,Nobody,n@x.com\n"
            "C2,Li,l@x.com\nC1,Wang,\n")
    vs, t, df = _decide(engine, tmp_path, text, kind="contacts")
    expected = ["loaded", "quarantined", "duplicate", "quarantined", "loaded", "duplicate"]
    assert df["_status"].tolist() == expected  # quarantined repeats stay quarantined
    # as the stage does it: the stored rows, and the repeats' row numbers stored once
    base = engine.scratch("base_contacts", t.drop("_status"))
    stored = vs.decided(base, materialize=lambda name, expr: engine.scratch(name, expr))
    assert engine.to_pandas(stored.order_by("_row_number"))["_status"].tolist() == expected
    assert sorted(engine.to_pandas(engine.con.table("dups_contacts"))["_dup_row"]) == [3, 6]


def test_optional_bad_values_are_nulled_and_flagged(engine, tmp_path):
    text = ("source_customer_id,birth_date,consent_marketing,gender\nC1,1990-02-30,maybe,x\nC2,1990-01-01,Y,F\n")
    vs, _, df = _decide(engine, tmp_path, text, kind="contacts")
    assert (df["_status"] == "loaded").all()
    assert pd.isna(df.loc[1, "birth_date"]) and df.loc[1, "_nulled_birth_date"]
    assert df.loc[1, "_nulled_consent_marketing"] and df.loc[1, "_nulled_gender"]
    assert df.loc[2, "consent_marketing"] == True  # noqa: E712 - numpy bool
    assert not df.loc[2, "_nulled_birth_date"]


def test_spend_and_touchpoint_rules(engine, tmp_path):
    text = "date,channel,cost\n2026-06-01,email,10\n2026-06-01,sms,-1\n2026-08-01,sms,1\n2026-06-01,,1\n"
    _, _, df = _decide(engine, tmp_path, text, kind="spend")
    assert df["_reason"].tolist()[1:] == ["negative_cost:cost", "future_timestamp:date", "missing_value:channel"]
    text = "touch_ts,channel,anonymous_id,source_customer_id\n2026-06-01,email,,\n2026-06-01,email,a1,\n"
    _, _, df = _decide(engine, tmp_path, text, kind="touchpoints")
    assert df["_reason"].tolist()[0] == "missing_value:source_customer_id_or_anonymous_id"
    assert df["_status"].tolist() == ["quarantined", "loaded"]


def test_survey_scores_out_of_range(engine, tmp_path):
    text = "source_customer_id,response_ts,nps_score,csat\nC1,2026-06-01,10,5\nC1,2026-06-02,11,3\nC1,2026-06-03,5,0\n"
    _, _, df = _decide(engine, tmp_path, text, kind="surveys")
    assert df["_reason"].tolist()[1:] == ["out_of_range:nps_score", "out_of_range:csat"]


def test_quarantined_contacts_redact_every_unmapped_column(engine, tmp_path):
    text = ("source_customer_id,name,email,phone,city,wechat_id,备注\n"
            ",Li Na,li@x.com,13900139000,Beijing,lina_wx,call 13900139001\n")
    _, _, df = _decide(engine, tmp_path, text, kind="contacts")
    assert df.loc[1, "_raw"] == ",<redacted>,<redacted>,<redacted>,Beijing,<redacted>,<redacted>"


def test_quarantined_rows_of_other_kinds_redact_personal_headers_only(engine, tmp_path):
    text = "source_customer_id,order_ts,amount,收货人,Shipping Address,shop\nC1,2026-01-01,oops,张三,Road 1,S1\n"
    _, _, df = _decide(engine, tmp_path, text)
    assert df.loc[1, "_raw"] == "C1,2026-01-01,oops,<redacted>,<redacted>,S1"


def test_declared_decimal_comma_and_bounds(engine, tmp_path):
    text = "source_customer_id,order_ts,amount\nC1,2026-01-01,\"1.234,50\"\nC1,2026-01-01,\"12,50\"\nC1,2026-01-01,2e9\n"
    _, _, df = _decide(engine, tmp_path, text, decimal=",")
    assert df.loc[1, "amount"] == 1234.5 and df.loc[2, "amount"] == 12.5
    assert reason_check(df.loc[3, "_reason"]) == "out_of_range:amount"
    _, _, df = _decide(engine, tmp_path, text)  # the default convention: never guessed
    assert [reason_check(r) for r in df["_reason"]] == ["bad_number:amount", "bad_number:amount", "out_of_range:amount"]
    assert all("set decimal: ',' on source orders" in r for r in df["_reason"][:2])


def test_optional_numbers_that_do_not_fit_are_nulled_and_counted(engine, tmp_path):
    text = "date,channel,cost,impressions,clicks\n2026-06-01,email,10,\"12,5\",5e12\n"
    vs, _, df = _decide(engine, tmp_path, text, kind="spend")
    assert df.loc[1, "_status"] == "loaded" and df.loc[1, "cost"] == 10
    assert pd.isna(df.loc[1, "impressions"]) and df.loc[1, "_nulled_impressions"]
    assert pd.isna(df.loc[1, "clicks"]) and df.loc[1, "_nulled_clicks"]  # beyond ingest.max_abs_amount


def test_duplicate_sources_by_path_and_by_content(tmp_path):
    from crmlib.ingest.validate import duplicate_sources

    (tmp_path / "a.csv").write_text("x\n1\n", encoding="utf-8")
    (tmp_path / "b.csv").write_text("x\n1\n", encoding="utf-8")
    (tmp_path / "c.csv").write_text("x\n2\n", encoding="utf-8")  # same size, other content
    srcs = [{"name": n, "path": str(p)} for n, p in
            [("a", tmp_path / "a.csv"), ("a_again", tmp_path / "." / "a.csv"), ("b", tmp_path / "b.csv"),
             ("c", tmp_path / "c.csv"), ("missing", tmp_path / "nope.csv")]]
    srcs[1]["path"] = str(tmp_path) + "/./a.csv"
    pairs = duplicate_sources({"sources": srcs})
    assert [(a, b) for a, b, _ in pairs] == [("a", "a_again"), ("a", "b"), ("a_again", "b")]
    assert "both read the file" in pairs[0][2] and "same content" in pairs[1][2]


def test_whole_row_repeats_found_through_the_hash_with_nulls_and_signed_zero(engine, tmp_path):
    # the repeats are looked for only among rows whose values' hash repeats: NULLs and -0.0 / 0.0 must hash
    # alike, or a real repeat would be missed
    text = ("order_id,product_id,quantity,amount,brand\n"
            "O1,P1,1,0.0,\n"        # 1 loaded
            "O1,P1,1,-0.0,\n"       # 2 duplicate of 1: -0.0 == 0.0, NULL brand == NULL brand
            "O1,P1,1,0.0,B\n"       # 3 loaded: another brand
            "O1,P2,1,5,\n"          # 4 loaded
            "O1,P1,1,0.00,\n")      # 5 duplicate of 1
    _, _, df = _decide(engine, tmp_path, text, kind="order_lines")
    assert df["_status"].tolist() == ["loaded", "duplicate", "loaded", "loaded", "duplicate"]
