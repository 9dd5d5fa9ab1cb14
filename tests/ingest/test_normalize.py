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
    t = con.create_table("phones_in", ibis.memtable({"p": CN_VARIANTS + ["13800138000", "+1 650 253 0000", "12345",
                                                                        None]}), temp=True)
    got = con.execute(phone_lookup(t.p, region="CN", name="test_lookup")).set_index("raw_phone")["phone"]
    assert len(got) == len(set(CN_VARIANTS)) + 2          # distinct, non-null values only
    assert set(got[CN_VARIANTS]) == {"+8613800138000"}
    assert got["+1 650 253 0000"] == "+16502530000"
    assert pd.isna(got["12345"])


# -- numbers under a declared convention, checked against an independent pure-Python parser -------------
_CURRENCY_WORDS = ("HK$", "US$", "RMB", "CNY", "USD", "EUR", "GBP", "HKD", "JPY", "¥", "￥", "$", "€", "£", "元")


def _reference_number(text, decimal=".", thousands=None):
    """What the text means under ``decimal``/``thousands`` (None when it does not fit): a plain
    procedural reading - NFKC for full-width forms, str.partition/split for the separators - written
    without the engine's regular expressions."""
    import math
    import unicodedata

    if text is None or not text.strip(" "):
        return None
    s = text.strip(" ")
    lowered = s.lower().lstrip("+-")
    if lowered in ("inf", "infinity", "nan"):
        return float(s.lower().replace("infinity", "inf"))
    if "e" in s.lower() and set(s) <= set("0123456789+-.eE"):
        try:
            return float(s)
        except ValueError:
            return None
    s = unicodedata.normalize("NFKC", s).replace("\u2212", "-").replace("\ufe63", "-")
    s = s.strip()
    paren = s.startswith("(") and s.endswith(")")
    if paren:
        s = s[1:-1].strip()
    if "(" in s or ")" in s:
        return None

    def take_currency(t, at_start):
        for w in _CURRENCY_WORDS:
            w2 = unicodedata.normalize("NFKC", w)
            if at_start and t.upper().startswith(w2):
                return t[len(w2):].strip()
            if not at_start and t.upper().endswith(w2):
                return t[:-len(w2)].strip()
        return t

    signs = []
    if s and s[0] in "+-":
        signs.append(s[0]); s = s[1:].strip()
    s = take_currency(s, True)
    if s and s[0] in "+-":
        signs.append(s[0]); s = s[1:].strip()
    if s.endswith("-"):  # a trailing minus comes last: '12.50 CNY-'
        signs.append("-"); s = s[:-1].strip()
    s = take_currency(s, False)
    if len(signs) > 1 or (paren and "-" in signs) or not s or "  " in s:
        return None
    seps = ((thousands,) if thousands else ()) if thousands is not None else (
        (",",) if decimal == "." else (".", " "))
    if s.count(decimal) > 1:
        return None
    whole, _, frac = s.partition(decimal)
    digits = set("0123456789")
    if decimal in s and (not frac or not set(frac) <= digits):
        return None
    if whole == "":
        if not frac:
            return None
    elif not set(whole) <= digits:
        for sep in seps:
            groups = whole.split(sep)
            if (len(groups) > 1 and 1 <= len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:])
                    and all(set(g) <= digits and g for g in groups)):
                whole = "".join(groups)
                break
        else:
            return None
    value = float(f"{whole or '0'}.{frac or '0'}")
    value = -value if (paren or "-" in signs) else value
    assert not math.isnan(value)
    return value


_HAND_PICKED = ["12,50", "0,99", "1.234,50", "1,234.50", "1,234", "1 234,50", "€1.234,50", "¥1,234.50",
                "￥１２３．５", "RMB 88", "rmb 88", "88元", "HK$ 1,000", "1e308", "1e400", "inf", "-Infinity", "NaN",
                "2e9", "\u221212.5", "(12.50)", "12.50-", "-¥12.50", "¥-12.50", "(-12)", "--", "1.2.3", "N/A",
                "¥ ", "12,5O", ".5", ",5", "5.", "1'234.5", "12 50", "1,23,456", "1,234,567.89", "1.234.567,89",
                "+5", "+-5", "0012.50", "1_000", "0x10", "12.50 CNY", "$1,234.50 USD", "(¥1,234.50)", "１，２３４",
                "1\u00a0234,50", "1\u202f234,50", "  7  ", "", None, "12-", "-12-", "1 , 234"]


def _random_number_texts(n, seed=11):
    """Texts assembled from the pieces real exports use: signs, currency, groups, marks, full width."""
    import random

    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        whole = str(rnd.choice([0, 7, 12, 999, 1000, 12345, 1234567, 98765432]))
        sep = rnd.choice(["", ",", ".", " ", "'", ","])
        if sep and rnd.random() < 0.8:
            groups = []
            while len(whole) > 3:
                groups.insert(0, whole[-3:]); whole = whole[:-3]
            whole = sep.join([whole, *groups]) if groups else whole
        if rnd.random() < 0.15:  # a broken grouping
            whole = whole[:-1] + sep + whole[-1:] if len(whole) > 2 else whole
        mark = rnd.choice([".", ",", ""])
        text = whole + (mark + str(rnd.choice([5, 50, 99, 125])) if mark else "")
        if rnd.random() < 0.3:
            text = rnd.choice(["¥", "￥", "€", "$", "RMB ", "HK$"]) + text
        if rnd.random() < 0.15:
            text = text + rnd.choice([" CNY", "元", " EUR"])
        r = rnd.random()
        if r < 0.1:
            text = "-" + text
        elif r < 0.15:
            text = "(" + text + ")"
        elif r < 0.2:
            text = text + "-"
        elif r < 0.25:
            text = "\u2212" + text
        if rnd.random() < 0.1:
            text = "".join(chr(ord(ch) + 0xFEE0) if "0" <= ch <= "9" or ch in ".,-" else ch for ch in text)
        out.append(text)
    return out


@pytest.mark.parametrize("decimal,thousands", [(".", None), (",", None), (".", "'"), (",", ""), (".", " ")])
def test_numbers_agree_with_an_independent_parser(con, decimal, thousands):
    import math

    from crmlib.ingest.normalize import NumberFormat, parse_number_text

    values = _HAND_PICKED + _random_number_texts(400)
    fmt = NumberFormat(decimal, thousands)
    got = _eval(con, values, lambda x: parse_number_text(x, fmt=fmt))
    loaded = 0
    for text, engine_value in zip(values, got):
        expected = _reference_number(text, decimal, thousands)
        if expected is None:
            assert pd.isna(engine_value) and not (isinstance(engine_value, float) and math.isinf(engine_value)), text
        elif math.isnan(expected):
            assert math.isnan(engine_value), text
        else:
            assert engine_value == expected, (text, engine_value, expected)
            loaded += 1
    assert loaded > 100  # the comparison is not only about texts that do not parse


def test_decimal_conventions_by_hand(con):
    from crmlib.ingest.normalize import NumberFormat, parse_number

    texts = ["12,50", "0,99", "1.234,50", "1,234.50", "1,234", "1 234,50", "€1.234,50", "(12.50)", "1e308"]
    default = _eval(con, texts, lambda x: parse_number(x, fmt=NumberFormat()))
    comma = _eval(con, texts, lambda x: parse_number(x, fmt=NumberFormat(",")))
    assert [None if pd.isna(v) else v for v in default] == [None, None, None, 1234.5, 1234.0, None, None, -12.5, 1e308]
    assert [None if pd.isna(v) else v for v in comma] == [12.5, 0.99, 1234.5, None, 1.234, 1234.5, 1234.5, None, 1e308]


def test_number_problem_names_the_likely_cause(con):
    from crmlib.ingest.normalize import NumberFormat, number_problem

    texts = ["12,50", "1.234,50", "1,234.50", "1,23,456", "(-5)", "abc", "12.50"]
    assert _eval(con, texts, lambda x: number_problem(x, NumberFormat()))[:5] == [
        "decimal_comma", "decimal_comma", "sign", "grouping", "sign"]
    assert _eval(con, texts, lambda x: number_problem(x, NumberFormat(","))) [2:] == [
        "decimal_point", "grouping", "sign", "not_a_number", "decimal_point"]


def test_number_format_from_a_source():
    from crmlib.ingest.normalize import NumberFormat, number_format
    from crmlib.params import complete_source

    def source(**kw):  # a source entry as validated params hold it (every default from the schema)
        return complete_source({"name": "s", "kind": "orders", "path": "orders.csv", **kw})

    assert number_format(source()) == NumberFormat(".", None)
    assert number_format(source(decimal=",", thousands=None)).separators == (".", " ")
    assert number_format(source(decimal=".", thousands="")).separators == ()
    for bad in ({"decimal": ";"}, {"thousands": "_"}, {"decimal": ",", "thousands": ","}):
        with pytest.raises(ValueError):
            number_format({**source(), **bad})  # past the schema: number_format's own check


def test_more_date_forms_and_excel_serials(con):
    from crmlib.ingest.normalize import date_problem

    values = ["2026-03-01 14:05:09 +0800", "2026-03-01T14:05:09+08", "2026年3月1日 14:05", "2026年03月01日",
              "2026年3月1日14:05", "2026.3.1 14:05", "45352", "45352.5", "32874", "73415.99",
              "32873", "73416", "12345", "2026-02-30", "2026-13-01", "03/04/2026", "00/00/0000", "45352x"]
    got = _eval(con, values, lambda x: parse_timestamp(x, timezone="Asia/Shanghai"))
    excel_day0 = dt.datetime(1899, 12, 30)  # independent: Excel's day 0 as Python counts days
    expected = [dt.datetime(2026, 3, 1, 14, 5, 9), dt.datetime(2026, 3, 1, 14, 5, 9), dt.datetime(2026, 3, 1, 14, 5),
                dt.datetime(2026, 3, 1), dt.datetime(2026, 3, 1, 14, 5), dt.datetime(2026, 3, 1, 14, 5),
                excel_day0 + dt.timedelta(days=45352), excel_day0 + dt.timedelta(days=45352.5),
                dt.datetime(1990, 1, 1), excel_day0 + dt.timedelta(seconds=round(73415.99 * 86400))]
    assert [pd.Timestamp(v).to_pydatetime() for v in got[:10]] == expected
    assert expected[9].date() == dt.date(2100, 12, 31)
    assert all(pd.isna(v) for v in got[10:])
    problems = _eval(con, values[12:], lambda x: date_problem(x, None))
    assert problems == ["not_a_date", "no_such_date", "no_such_date", "day_month_order", "not_a_date", "not_a_date"]
    assert _eval(con, ["03/04/2026"], lambda x: date_problem(x, "%d/%m/%Y")) == ["not_a_date"]
