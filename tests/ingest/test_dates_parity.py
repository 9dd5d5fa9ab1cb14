"""Date parsing gives the same timestamps on DuckDB and on Spark.

The whole table of accepted forms (every entry of ``TIMESTAMP_FORMATS`` written zero-padded and not,
ISO 8601 with and without offsets, Chinese dates, Excel serial days, a source's own ``date_format``)
and of values that must not parse is read on both engines; each good value must also equal the
timestamp Python computes for it. Spark needs a Java runtime: without one this test fails (it is never
skipped).
"""

from __future__ import annotations

import datetime as dt
import unicodedata
import zoneinfo

import ibis
import pandas as pd

from crmlib.engine import Engine
from crmlib.ingest.normalize import (TIMESTAMP_FORMATS, clean_text, date_problem, parse_number, parse_timestamp)

ZONE = "Asia/Shanghai"
MOMENT = dt.datetime(2026, 3, 1, 14, 5, 9)


def _unpadded(fmt: str, when: dt.datetime) -> str:
    """``when`` written with ``fmt`` but month, day and hour without a leading zero where a separator
    follows (``2026/3/1 4:05``), as exports written by hand or by Excel often are."""
    out = when.strftime(fmt)
    if "%Y%m%d" in fmt:  # fields that touch have fixed widths
        return out
    for code, value in (("%m", when.month), ("%d", when.day), ("%H", when.hour)):
        out = out.replace(when.strftime(fmt.replace(code, "\0")).split("\0")[0] + f"{value:02d}",
                          when.strftime(fmt.replace(code, "\0")).split("\0")[0] + str(value), 1)
    return out


def _local(iso: str) -> dt.datetime:
    """The independent answer for a text with an offset: Python's fromisoformat and zoneinfo."""
    return dt.datetime.fromisoformat(iso).astimezone(zoneinfo.ZoneInfo(ZONE)).replace(tzinfo=None)


def _good_values() -> list[tuple[str, str | None, dt.datetime]]:
    """(text, source date_format, expected naive local timestamp)."""
    early = dt.datetime(2025, 11, 7, 4, 3, 2)  # single-digit month, day, hour, minute, second
    rows: list[tuple[str, str | None, dt.datetime]] = []
    for fmt in TIMESTAMP_FORMATS:
        for when in (MOMENT, early):
            expected = dt.datetime.strptime(when.strftime(fmt), fmt)
            rows.append((when.strftime(fmt), None, expected))
            rows.append((_unpadded(fmt, when), None, expected))
    rows += [
        ("2026-03-01", None, dt.datetime(2026, 3, 1)),
        ("2026-3-1", None, dt.datetime(2026, 3, 1)),
        ("2026-03-01 14:05", None, dt.datetime(2026, 3, 1, 14, 5)),
        ("2026-03-01T14:05:09", None, MOMENT),
        ("2026-03-01 14:05:09.123456", None, MOMENT.replace(microsecond=123456)),
        ("2026-03-01T14:05:09.5", None, MOMENT.replace(microsecond=500000)),
        ("2026-03-01 24:00:00", None, dt.datetime(2026, 3, 2)),  # ISO's end of day
        (" 2026-03-01 ", None, dt.datetime(2026, 3, 1)),
        ("2026-02-28 23:59:59", None, dt.datetime(2026, 2, 28, 23, 59, 59)),
        ("2024-02-29", None, dt.datetime(2024, 2, 29)),
        ("2026年3月1日", None, dt.datetime(2026, 3, 1)),
        ("2026年03月01日 14:05", None, dt.datetime(2026, 3, 1, 14, 5)),
        ("2026年3月1日14:05", None, dt.datetime(2026, 3, 1, 14, 5)),
        ("2026/3/1", None, dt.datetime(2026, 3, 1)),
        ("2026/3/1  14:05", None, dt.datetime(2026, 3, 1, 14, 5)),  # two spaces: whitespace runs match
        ("2026.3.1 4:05", None, dt.datetime(2026, 3, 1, 4, 5)),
        ("20260301", None, dt.datetime(2026, 3, 1)),
        ("20260301140509", None, MOMENT),
        # offsets: converted to run.timezone
        ("2026-03-01T06:05:09Z", None, _local("2026-03-01T06:05:09+00:00")),
        ("2026-03-01T06:05:09z", None, _local("2026-03-01T06:05:09+00:00")),
        ("2026-03-01 06:05:09 UTC", None, _local("2026-03-01T06:05:09+00:00")),
        ("2026-03-01 06:05:09UTC", None, _local("2026-03-01T06:05:09+00:00")),
        ("2026-03-01T14:05:09+08:00", None, _local("2026-03-01T14:05:09+08:00")),
        ("2026-03-01 14:05:09 +0800", None, _local("2026-03-01T14:05:09+08:00")),
        ("2026-03-01 14:05:09+0800", None, _local("2026-03-01T14:05:09+08:00")),
        ("2026-03-01T14:05:09+08", None, _local("2026-03-01T14:05:09+08:00")),
        ("2026-03-01 01:05:09-05:00", None, _local("2026-03-01T01:05:09-05:00")),
        ("2026-03-01 01:05-05:30", None, _local("2026-03-01T01:05:00-05:30")),
        ("2026-03-01T23:30:00.250-0930", None, _local("2026-03-01T23:30:00.250-09:30")),
        ("2026-12-31T20:00:00Z", None, _local("2026-12-31T20:00:00+00:00")),  # a new year in Shanghai
        ("2026-3-1 6:05:09+00:00", None, _local("2026-03-01T06:05:09+00:00")),
        ("2026/03/01 14:05+08:00", None, _local("2026-03-01T14:05:00+08:00")),
        # Excel serial days (day 0 = 1899-12-30)
        ("45352", None, dt.datetime(1899, 12, 30) + dt.timedelta(days=45352)),
        ("45352.5", None, dt.datetime(1899, 12, 30) + dt.timedelta(days=45352.5)),
        ("32874", None, dt.datetime(1990, 1, 1)),
        # a source's own date_format, tried first
        ("03/04/2026", "%d/%m/%Y", dt.datetime(2026, 4, 3)),
        ("3/4/2026", "%d/%m/%Y", dt.datetime(2026, 4, 3)),
        ("03/04/2026", "%m/%d/%Y", dt.datetime(2026, 3, 4)),
        ("3/1/2026 2:05 PM", "%m/%d/%Y %I:%M %p", dt.datetime(2026, 3, 1, 14, 5)),
        ("01.03.2026 14:05", "%d.%m.%Y %H:%M", dt.datetime(2026, 3, 1, 14, 5)),
        ("01-Mar-2026", "%d-%b-%Y", dt.datetime(2026, 3, 1)),
        ("2026-03-01", "%d/%m/%Y", dt.datetime(2026, 3, 1)),  # ISO still parses beside the format
        ("01032026", "%d%m%Y", dt.datetime(2026, 3, 1)),
        ("2026-03", "%Y-%m", dt.datetime(2026, 3, 1)),
        ("2026-03-01T14h05", "%Y-%m-%dT%Hh%M", dt.datetime(2026, 3, 1, 14, 5)),
    ]
    return rows


BAD_VALUES: list[tuple[str | None, str | None]] = [
    ("not a date", None), ("", None), (None, None), ("2026-02-30", None), ("2026-13-01", None),
    ("2026/02/30", None), ("2026年2月30日", None), ("20260230", None), ("2026-03-01 25:00", None),
    ("2026-03-01 14:05:60", None), ("03/04/2026", None), ("00/00/0000", None), ("2026", None),
    ("2026-03", None), ("+2026-03-01", None), ("2026-03-01T14", None), ("2026/3/114:05", None),
    ("2026/ 3/1", None), ("202631", None), ("12345", None), ("32873", None), ("73416", None), ("45352x", None),
    ("2026-03-01 14:05:09+8", None), ("2026-03-01T14:05:09ZZ", None),
    ("2026-02-30T10:00:00+08:00", None), ("1/3/2026", None),
    ("31/02/2026", "%d/%m/%Y"), ("13/13/2026", "%m/%d/%Y"), ("yesterday", "%d/%m/%Y"),
]




def _texts(engine: Engine, texts: list[str | None]) -> ibis.Table:
    """``texts`` as a table ``(i, x)`` stored on ``engine``, so that the engine itself runs the query."""
    frame = pd.DataFrame({"i": range(len(texts)), "x": pd.Series(texts, dtype="object")})
    return engine.scratch("parity_texts", frame, schema=ibis.schema({"i": "int64", "x": "string"}))


def _parse_on(engine: Engine, rows: list[tuple[str | None, str | None]]) -> list:
    """``parse_timestamp`` of every (text, date_format), in order, on ``engine``: one query per format
    (one parse is a large expression; several in one query exceed Spark's generated-code limit)."""
    t = _texts(engine, [r[0] for r in rows])
    got: dict[int, dt.datetime | None] = {}
    for fmt in sorted({r[1] for r in rows}, key=str):
        wanted = [i for i, r in enumerate(rows) if r[1] == fmt]
        part = t.filter(t.i.isin(wanted))
        out = engine.to_pandas(part.select("i", y=parse_timestamp(part.x, timezone=ZONE, date_format=fmt,
                                                                  backend=engine)))
        got.update({int(i): _plain(y) for i, y in zip(out.i, out.y)})
    return [got[i] for i in range(len(rows))]


def _plain(value) -> dt.datetime | None:
    return None if pd.isna(value) else pd.Timestamp(value).to_pydatetime()


def test_good_dates_are_equal_on_both_engines_and_right(engines):
    duck, spark = engines
    good = _good_values()
    rows = [(text, fmt) for text, fmt, _ in good]
    on_duck, on_spark = _parse_on(duck, rows), _parse_on(spark, rows)
    expected = [e for _, _, e in good]
    assert len(rows) > 60
    wrong_duck = [(r, d, e) for r, d, e in zip(rows, on_duck, expected) if d != e]
    wrong_spark = [(r, s, e) for r, s, e in zip(rows, on_spark, expected) if s != e]
    assert wrong_duck == []
    assert wrong_spark == []


def test_bad_dates_are_null_on_both_engines(engines):
    duck, spark = engines
    on_duck, on_spark = _parse_on(duck, BAD_VALUES), _parse_on(spark, BAD_VALUES)
    assert [(r, v) for r, v in zip(BAD_VALUES, on_duck) if v is not None] == []
    assert [(r, v) for r, v in zip(BAD_VALUES, on_spark) if v is not None] == []


def test_date_problems_are_equal_on_both_engines(engines):
    duck, spark = engines
    texts = ["2026-02-30", "2026-13-01", "03/04/2026", "00/00/0000", "45352x", "yesterday", "2026年2月30日"]

    def problems(engine):
        t = _texts(engine, texts)
        return engine.to_pandas(t.select("i", plain=date_problem(t.x, None),
                                          with_format=date_problem(t.x, "%d/%m/%Y")).order_by("i"))

    d, s = problems(duck), problems(spark)
    assert list(d.plain) == ["no_such_date", "no_such_date", "day_month_order", "not_a_date", "not_a_date",
                             "not_a_date", "no_such_date"]
    assert list(s.plain) == list(d.plain)
    assert list(s.with_format) == list(d.with_format)


def test_trimming_is_the_same_on_both_engines(engines):
    """``clean_text`` trims space separators (the space, U+00A0, U+3000, thin spaces) where a space is
    at an edge, and never tabs or newlines; ``strip()`` trims ASCII whitespace only (Ibis' own compiler
    on Spark also stripped the letters f and v: ``"chef"``, below; the Spark backend's compiler fixes it).
    Both the same on either engine."""
    duck, spark = engines
    texts = ["  a  ", "\ta\n", " 张三\u3000", "\u3000张三\u3000", "\u00a0a\u00a0", " \u3000 a", "   ", "", "a b",
             "\r\n a \x0b\x0c", " \u2009a\u200b", "\u2009a", "chef", "\fvivf\v"]

    def cleaned(engine):
        t = _texts(engine, texts)
        out = engine.to_pandas(t.select("i", c=clean_text(t.x, backend=engine),
                                            s=t.x.strip()).order_by("i"))
        return [None if pd.isna(v) else v for v in out.c], list(out.s)

    def expected(x):  # independent: Python's own Unicode categories
        if not x.startswith(" ") and not x.endswith(" "):
            return x or None
        chars = "".join(c for c in set(x) if unicodedata.category(c) == "Zs")
        return x.strip(chars) or None

    (d_clean, d_strip), (s_clean, s_strip) = cleaned(duck), cleaned(spark)
    assert d_clean == [expected(x) for x in texts]
    assert d_clean[2] == "张三" and d_clean[3] == "\u3000张三\u3000" and d_clean[1] == "\ta\n"
    assert s_clean == d_clean
    assert d_strip == s_strip == [x.strip(" \t\n\r\x0b\x0c") for x in texts]


def test_numbers_are_equal_on_both_engines(engines):
    duck, spark = engines
    texts = ["12.50", "1,234.50", "¥1,234", "(12.50)", "12,50", "１２３．５０", "-5", "1e3", "inf", "abc", None]

    def numbers(engine):
        t = _texts(engine, texts)
        return engine.to_pandas(t.select("i", n=parse_number(t.x)).order_by("i"))

    d, s = numbers(duck), numbers(spark)
    assert [None if pd.isna(v) else v for v in d.n] == [12.5, 1234.5, 1234.0, -12.5, None, 123.5, -5.0, 1000.0,
                                                        None, None, None]
    assert [None if pd.isna(v) else v for v in s.n] == [None if pd.isna(v) else v for v in d.n]
