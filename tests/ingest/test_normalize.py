"""crmlib.ingest.normalize: timestamps, numbers, booleans, emails, phones - checked against Python's own
zoneinfo/float parsing and the phonenumbers library, not against the engine."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import ibis
import pandas as pd
import phonenumbers
import pytest

from crmlib.ingest.normalize import (
    cn_mobile_e164, normalize_email, parse_bool, parse_gender, parse_number, parse_timestamp, phone_lookup,
    phone_to_e164,
)


@pytest.fixture(scope="module")
def con():
    c = ibis.duckdb.connect()
    yield c
    c.disconnect()


def _eval(con, values, fn):
    t = ibis.memtable(pd.DataFrame({"x": pd.Series(values, dtype="object")}), schema={"x": "string"})
    return list(con.execute(t.select(y=fn(t.x))).y)


def test_timestamps_to_naive_local(con):
    values = ["2026-03-01 14:05:09", "2026-03-01T14:05", "2026/03/01 14:05", "2026/3/1", "20260301",
              "2026年3月1日", "2026-03-01T06:05:09Z", "2026-03-01T14:05:09+08:00", "2026-03-01 01:05:09-05:00",
              " 2026-03-01 ", "not a date", None, ""]
    got = _eval(con, values, lambda x: parse_timestamp(x, timezone="Asia/Shanghai"))
    shanghai = zoneinfo.ZoneInfo("Asia/Shanghai")

    def local(s):  # the independent answer: Python's fromisoformat + zoneinfo
        return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(shanghai).replace(tzinfo=None)

    expected = [dt.datetime(2026, 3, 1, 14, 5, 9), dt.datetime(2026, 3, 1, 14, 5), dt.datetime(2026, 3, 1, 14, 5),
                dt.datetime(2026, 3, 1), dt.datetime(2026, 3, 1), dt.datetime(2026, 3, 1),
                local("2026-03-01T06:05:09Z"), local("2026-03-01T14:05:09+08:00"),
                local("2026-03-01T01:05:09-05:00"), dt.datetime(2026, 3, 1)]
    assert [pd.Timestamp(v).to_pydatetime() for v in got[:10]] == expected
    assert expected[8] == dt.datetime(2026, 3, 1, 14, 5, 9)  # -05:00 -> +08:00 is 13 hours later
    assert all(pd.isna(v) for v in got[10:])


def test_source_date_format_wins(con):
    got = _eval(con, ["03/04/2026"], lambda x: parse_timestamp(x, timezone="UTC", date_format="%d/%m/%Y"))
    assert pd.Timestamp(got[0]) == pd.Timestamp("2026-04-03")


def test_timestamps_in_another_zone(con):
    got = _eval(con, ["2026-07-01T12:00:00Z", "2026-07-01 12:00"], lambda x: parse_timestamp(x, timezone="Europe/Berlin"))
    assert pd.Timestamp(got[0]) == pd.Timestamp("2026-07-01 14:00")  # CEST = UTC+2
    assert pd.Timestamp(got[1]) == pd.Timestamp("2026-07-01 12:00")  # naive: already local


def test_amounts(con):
    values = ["¥1,234.50", "1234.5", " -20 ", "￥ 99", "USD 3.5", "1e3", "abc", "12abc", "NaN", "inf", None]
    got = _eval(con, values, parse_number)
    assert got[:6] == [1234.5, 1234.5, -20.0, 99.0, 3.5, 1000.0]
    assert all(pd.isna(v) for v in got[6:])


def test_booleans_and_gender(con):
    got = _eval(con, ["Y", "n", "TRUE", "0", "是", "否", "maybe", None], parse_bool)
    assert got[:6] == [True, False, True, False, True, False]
    assert all(pd.isna(v) for v in got[6:])
    got = _eval(con, ["M", "female", "男", "女", "x"], parse_gender)
    assert got[:4] == ["M", "F", "M", "F"] and pd.isna(got[4])


def test_emails(con):
    got = _eval(con, [" Wang.Wei@Example.COM ", "wang.wei@example.com", "not-an-email", "a@b", "x y@z.com", None],
                normalize_email)
    assert got[:2] == ["wang.wei@example.com", "wang.wei@example.com"]
    assert all(pd.isna(v) for v in got[2:])


CN_VARIANTS = ["138 0013 8000", "+86 13800138000", "13800138000", "0086 138-0013-8000", "86-138.0013.8000",
               "(138)00138000"]


def test_cn_mobile_fast_path(con):
    got = _eval(con, CN_VARIANTS + ["12800138000", "1380013800", "+1 650 253 0000"], cn_mobile_e164)
    assert got[:6] == ["+8613800138000"] * 6
    assert all(pd.isna(v) for v in got[6:])  # not a mainland mobile: left to phonenumbers


def test_fast_path_agrees_with_phonenumbers(con):
    # independent check: every fast-path answer equals phonenumbers' E.164 of the same string
    got = _eval(con, CN_VARIANTS, cn_mobile_e164)
    for raw, fast in zip(CN_VARIANTS, got):
        assert fast == phone_to_e164(raw.replace("(", "").replace(")", ""), "CN")


def test_phone_to_e164_other_numbers():
    assert phone_to_e164("+1 650-253-0000", "CN") == "+16502530000"
    assert phone_to_e164("020 8888 8888", "CN") == "+862088888888"      # Guangzhou landline, region CN
    assert phone_to_e164("020 7946 0958", "GB") == "+442079460958"      # same digits, region GB
    assert phone_to_e164("12345", "CN") is None
    assert phone_to_e164("", "CN") is None and phone_to_e164(None) is None
    expected = phonenumbers.format_number(phonenumbers.parse("+44 20 7946 0958"), phonenumbers.PhoneNumberFormat.E164)
    assert phone_to_e164("0044 20 7946 0958", "CN") == expected


def test_phone_lookup_on_distinct_values(con):
    t = ibis.memtable({"p": CN_VARIANTS + ["13800138000", "+1 650 253 0000", "12345", None]})
    got = con.execute(phone_lookup(con, t.p, region="CN", name="test_lookup")).set_index("raw_phone")["phone"]
    assert len(got) == len(set(CN_VARIANTS)) + 2          # distinct, non-null values only
    assert set(got[CN_VARIANTS]) == {"+8613800138000"}
    assert got["+1 650 253 0000"] == "+16502530000"
    assert pd.isna(got["12345"])
