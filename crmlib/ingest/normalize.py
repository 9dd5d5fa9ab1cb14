"""Text to typed values, as Ibis expressions: timestamps, numbers, booleans, emails and phones.

Conventions
-----------
* Timestamps become **naive local time in ``run.timezone``**: a string with an explicit offset or
  ``Z`` is converted to that zone; a naive string is taken as already local. Accepted: the source's
  ``date_format`` (tried first), ISO 8601 (``2026-03-01``, ``2026-03-01 14:05[:09[.123]]``, with ``T``),
  ``2026/03/01[ 14:05[:09]]``, ``2026/3/1``, ``20260301``, ``20260301140509``, ``2026.03.01``,
  ``2026年3月1日[ 14:05]``; offsets ``+08:00``, ``+0800``, ``+08``, ``Z``, ``UTC`` (a space before the
  offset is allowed).
  A number between 32874 and 73415 (1990-01-01 .. 2100-12-31 as an Excel serial day, ``45352`` or
  ``45352.5``) in a date column is an Excel date (day 0 = 1899-12-30, the fraction is the time of day).
  Day-first or month-first dates (``03/04/2026``) are never guessed: without the source's ``date_format``
  they do not parse (the row's reason says to set it). A date that does not exist (``2026-02-30``) does
  not parse.
* Numbers follow the source's declared convention (:class:`NumberFormat`: ``decimal`` ``'.'`` or
  ``','``, ``thousands``) and are never guessed. A thousands separator must group exactly three digits;
  one number uses one separator. Currency symbols and codes before or after the number
  (``¥ ￥ $ € £ HK$ US$ CNY RMB USD EUR GBP HKD JPY 元``) are stripped; full-width digits and
  punctuation (``１２３．５０``, ``－``, ``，``) and the unicode minus are folded to ASCII first. A
  leading or trailing minus and accounting parentheses (``(12.50)`` = -12.5) make a number negative;
  two signs do not parse. Scientific notation (``1e3``, ``1.5E-05``, as Parquet and JSON numbers read as
  text) is accepted with a ``.`` mark whatever the convention. Under the default (``.`` / ``,``):
  ``1,234.50`` -> 1234.5, ``1,234`` -> 1234, while ``12,50``, ``0,99``, ``1.234,50`` and ``1 234,50`` do
  not parse; with ``decimal: ','``: ``12,50`` -> 12.5, ``1.234,50`` and ``1 234,50`` -> 1234.5.
  ``inf``/``nan`` and numbers beyond the float range parse to non-finite values, which the validator
  rejects; :func:`number_problem` says why a text did not parse.
* Phones: E.164 (``+8613800138000``). 11-digit mainland mobiles (optionally ``+86``/``0086``/``86``,
  with spaces, dashes, dots or brackets) take a vectorized fast path in the engine; every other distinct
  value goes through ``phonenumbers`` (default region ``privacy.default_phone_region``). Invalid -> null.
* Emails: trimmed and lower-cased; anything not ``local@domain.tld`` -> null.
* Text: :func:`clean_text` trims space separators (the space, U+00A0, U+3000, ...) at both ends of a
  field that starts or ends with a space, never tabs or newlines; empty -> null.

Engines
-------
Every function here is an Ibis expression that gives the same values on DuckDB and on Spark
(``tests/ingest/test_dates_parity.py``). The few pieces whose SQL differs - reading a date with a
strftime format, the ISO cast, an offset to wall time in ``run.timezone``, trimming, regex replacements
that name groups - come from the engine's backend module (``backend=``: an Engine, its backend module or
its kind; default DuckDB). :data:`TIMESTAMP_FORMATS` is the one table of formats, in strftime notation,
for both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import ibis
import pandas as pd
import phonenumbers

from crmlib.backends import backend_module
from crmlib.engine import scratch_beside
from crmlib.params import USUAL_THOUSANDS, schema_default

__all__ = [
    "clean_text", "parse_gender", "parse_number_text", "finite_or_null", "parse_timestamp", "parse_date",
    "parse_number", "parse_bool", "normalize_email", "NumberFormat", "number_format", "number_problem",
    "date_problem", "fold_number_text", "EXCEL_SERIAL_RANGE",
    "cn_mobile_e164", "phone_to_e164", "phone_lookup", "TIMESTAMP_FORMATS", "TRUE_WORDS", "FALSE_WORDS",
    "backend_of",
]

TIMESTAMP_FORMATS = ("%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d", "%Y%m%d%H%M%S", "%Y%m%d",
                     "%Y.%m.%d %H:%M:%S", "%Y.%m.%d %H:%M", "%Y.%m.%d", "%Y-%m-%d %H:%M",
                     "%Y年%m月%d日 %H:%M:%S", "%Y年%m月%d日 %H:%M", "%Y年%m月%d日%H:%M", "%Y年%m月%d日")
TRUE_WORDS = ("true", "t", "yes", "y", "1", "是", "opt_in", "opt-in", "subscribed")
FALSE_WORDS = ("false", "f", "no", "n", "0", "否", "opt_out", "opt-out", "unsubscribed")
MALE_WORDS = ("m", "male", "man", "男", "先生")
FEMALE_WORDS = ("f", "female", "woman", "女", "女士")
_OFFSET = r"\d:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|z|UTC|[+-]\d{2}(:?\d{2})?)$"
_LARGEST_DOUBLE = 1.7976931348623157e308
# Excel serial days of 1990-01-01 and 2100-12-31: a plain number in this range in a date column is a date
EXCEL_SERIAL_RANGE = (32874, 73415)
_EXCEL_SERIAL = r"^[0-9]{5}(\.[0-9]+)?$"
_SPACE_BEFORE_OFFSET = r"\s+([+-]\d{2}(:?\d{2})?|Z|z|UTC)$"
# full-width digits and punctuation, the unicode minus signs, and no-break/thin spaces -> ASCII
_FOLD_FROM = "０１２３４５６７８９．，－＋（）＇　＄\u2212\ufe63\u00a0\u202f\u2009"
_FOLD_TO = "0123456789.,-+()' $--   "
assert len(_FOLD_FROM) == len(_FOLD_TO)
_CURRENCY = r"(?:HK\$|US\$|(?i:RMB|CNY|USD|EUR|GBP|HKD|JPY)|[¥￥$€£元])"
# (paren)(sign)(currency)(sign)(digits and separators)(currency)(trailing minus)(paren)
_NUMBER_SHAPE = (r"^(\()?\s*([-+])?\s*" + _CURRENCY + r"?\s*([-+])?\s*([0-9.,']+(?: [0-9.,']+)*)\s*"
                 + _CURRENCY + r"?\s*(-)?\s*(\))?$")
_NUMBER_RUN = r"[0-9.,']+(?: [0-9.,']+)*"  # group 4 of _NUMBER_SHAPE: a text of that shape has one
_SCIENTIFIC = r"^[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"
_NON_FINITE_WORD = r"^[-+]?(?i:inf|infinity|nan)$"
_CN_MOBILE = r"^(?:\+?86|0086)?(1[3-9]\d{9})$"
_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s.]+$"


def backend_of(backend: Any = None) -> ModuleType:
    """The engine backend module (:mod:`crmlib.backends`) that runs the date and text functions.

    ``backend`` may be that module, an :class:`~crmlib.engine.Engine`, an engine kind (``"duckdb"``,
    ``"spark"``) or None (DuckDB, the default engine).
    """
    if backend is None:
        return backend_module("duckdb")
    if isinstance(backend, str):
        return backend_module(backend)
    if isinstance(backend, ModuleType):
        return backend
    return backend.backend  # an Engine


def clean_text(col: ibis.Value, *, backend: Any = None) -> ibis.Value:
    """Spaces trimmed at both ends; empty strings become null.

    The same on every engine: a field that starts or ends with a space (U+0020) loses every space
    separator at its ends (the backend's ``trim_spaces``: the space, a no-break space U+00A0, the
    full-width space U+3000, ...), so ``" 张三\u3000"`` becomes ``"张三"``. A field edged by a no-break or
    full-width space alone stays as it is, and so do tabs and newlines: testing for those too costs
    DuckDB 45 % more on every value of every column (5M values: 0.90 -> 1.30 s), for a rare case.
    """
    s = col.cast("string")
    # trim only where a space is at an edge: two LIKE tests cost less than trimming every value
    edged = s.like(" %") | s.like("% ")
    return ibis.ifelse(edged, backend_of(backend).trim_spaces(s), s).nullif("")


def parse_timestamp(col: ibis.Value, *, timezone: str, date_format: str | None = None,
                    cleaned: bool = False, backend: Any = None) -> ibis.Value:
    """Text -> naive local timestamp in ``timezone`` (null when no accepted format matches).

    ``cleaned=True``: ``col`` already went through :func:`clean_text` (saves a second trim).
    ``backend``: the engine that runs the expression (see :func:`backend_of`); the formats are the same
    on every engine, only their reading differs (``try_parse_timestamp`` and friends of the backend).
    """
    be = backend_of(backend)
    s = col if cleaned else clean_text(col, backend=be)
    # the offset regexes only where an offset can be (longer than 'YYYY-MM-DD HH:MM:SS', or ending in Z)
    maybe_offset = (s.length() > 19) | s.endswith("Z") | s.endswith("z")
    zoned = s.re_replace(_SPACE_BEFORE_OFFSET, r"\1")  # '... 14:05:09 +08:00': the cast wants no space
    with_offset = be.zoned_to_local(zoned.replace("UTC", "Z").replace("z", "Z"), timezone)
    naive = [be.try_cast_timestamp(s)] + [_with_format(s, f, be) for f in TIMESTAMP_FORMATS]
    if date_format:
        naive.insert(0, _with_format(s, date_format, be))
    naive.append(_excel_serial(s))
    has_offset = ibis.ifelse(maybe_offset, zoned.re_search(_OFFSET), False)
    return ibis.ifelse(has_offset, with_offset, ibis.coalesce(*naive))


def _with_format(s: ibis.Value, fmt: str, be: ModuleType) -> ibis.Value:
    """``s`` read with the strftime format ``fmt`` by the backend.

    A format of numbers only (``%Y%m%d``) is tried on texts of its length alone: DuckDB would read
    ``2026031`` with it, Spark's fixed-width pattern would not.
    """
    fields = re.findall(r"%([YmdHMS])", fmt)
    if fmt == "".join(f"%{f}" for f in fields):
        width = sum(4 if f == "Y" else 2 for f in fields)
        return ibis.ifelse(s.length() == width, be.try_parse_timestamp(s, fmt), ibis.null("timestamp"))
    return be.try_parse_timestamp(s, fmt)


def _excel_serial(s: ibis.Value) -> ibis.Value:
    """An Excel serial day number (1990..2100) -> naive timestamp; null for any other text."""
    lo, hi = EXCEL_SERIAL_RANGE
    days = ibis.ifelse(s.re_search(_EXCEL_SERIAL), s.try_cast("float64"), ibis.null("float64"))
    in_range = (days >= lo) & (days < hi + 1)
    # day 0 is 1899-12-30 (Excel's 1900 leap-year bug makes day 60 = 1900-02-29; serials >= 61 are right)
    stamp = ibis.timestamp("1899-12-30 00:00:00") + (days * 86400).round().cast("int64").as_interval("s")
    return ibis.ifelse(in_range, stamp, ibis.null("timestamp"))


def parse_date(col: ibis.Value, *, timezone: str, date_format: str | None = None,
               cleaned: bool = False, backend: Any = None) -> ibis.Value:
    """Text -> date (local), through :func:`parse_timestamp`."""
    return parse_timestamp(col, timezone=timezone, date_format=date_format, cleaned=cleaned,
                           backend=backend).date()


@dataclass(frozen=True)
class NumberFormat:
    """How a source writes numbers: the decimal mark and the thousands separator(s).

    Attributes
    ----------
    decimal : str
        ``'.'`` or ``','``.
    thousands : str or None
        ``','``, ``'.'``, ``' '``, ``"'"`` or ``''`` (no grouping); ``None`` = the usual for the mark:
        ``','`` for ``'.'``; ``'.'`` or a space for ``','`` (German and French writing).
    """

    decimal: str = schema_default("sources.decimal")
    thousands: str | None = schema_default("sources.thousands")

    @property
    def separators(self) -> tuple[str, ...]:
        """The thousands separators accepted (one number uses one of them)."""
        if self.thousands is not None:
            return (self.thousands,) if self.thousands else ()
        # with a decimal comma, German exports group with '.', French ones with a space
        return (USUAL_THOUSANDS[self.decimal],) + ((" ",) if self.decimal == "," else ())

    def describe(self) -> str:
        """``decimal '.' / thousands ','``, for messages."""
        seps = " or ".join(repr(t) for t in self.separators) or "none"
        return f"decimal {self.decimal!r} / thousands {seps}"

    def core_pattern(self) -> str:
        """RE2 pattern an unsigned number without currency must match entirely."""
        d = re.escape(self.decimal)
        whole = ["[0-9]+"] + [f"[0-9]{{1,3}}(?:{re.escape(t)}[0-9]{{3}})+" for t in self.separators]
        return f"^(?:(?:{'|'.join(whole)})(?:{d}[0-9]+)?|{d}[0-9]+)$"


def number_format(source: dict) -> NumberFormat:
    """The :class:`NumberFormat` a validated source declares (``decimal``, ``thousands``; null thousands =
    the usual one for the decimal mark).

    Raises
    ------
    ValueError
        For a mark other than ``'.'``/``','``, an unknown separator, or a separator equal to the mark.
    """
    decimal = source["decimal"]
    thousands = source["thousands"]
    if decimal not in (".", ","):
        raise ValueError(f"decimal must be '.' or ',', got {decimal!r}")
    if thousands is not None and thousands not in (",", ".", " ", "'", ""):
        raise ValueError(f"thousands must be one of ',', '.', ' ', \"'\", '' or null, got {thousands!r}")
    if thousands == decimal:
        raise ValueError(f"thousands {thousands!r} cannot be the decimal mark too")
    return NumberFormat(decimal, thousands)


def fold_number_text(col: ibis.Value) -> ibis.Value:
    """Full-width digits and punctuation, unicode minus signs and no-break spaces folded to ASCII.

    DuckDB's ``translate`` with these characters costs about 1 s per million values: it runs only on
    values that hold one of them (a character-class test is ten times cheaper).
    """
    foldable = col.re_search("[" + re.escape(_FOLD_FROM) + "]")
    return ibis.ifelse(foldable, col.translate(_FOLD_FROM, _FOLD_TO), col)


def parse_number(col: ibis.Value, *, fmt: NumberFormat | None = None, cleaned: bool = False) -> ibis.Value:
    """Text -> float64 under ``fmt`` (default ``.`` / ``,``); text that does not fit, NaN, inf -> null."""
    return finite_or_null(parse_number_text(col, fmt=fmt, cleaned=cleaned))


def parse_number_text(col: ibis.Value, *, fmt: NumberFormat | None = None, cleaned: bool = False) -> ibis.Value:
    """Like :func:`parse_number` but NaN and infinities pass through (see :func:`finite_or_null`).

    Most texts are plain numbers the engine's own cast reads the same way (``-12``, ``12.50`` under
    ``.``, ``1e3``, ``inf``): they take that cast and two substring tests, three times cheaper than a
    regular expression. The cast also reads ``1_000``, ``5.`` and ``+-5``, which nothing here allows, and
    under a decimal comma ``1.5``: those, and everything else (currency, separators, full-width forms,
    parentheses), go through the full shape.
    """
    fmt = fmt or NumberFormat()
    s = col if cleaned else clean_text(col)
    cast = s.try_cast("float64")
    direct = cast.notnull() & ~s.contains("_") & ~s.endswith(".") & ~s.startswith("+-")
    if fmt.decimal == ",":
        direct = direct & (~s.contains(".") | s.contains("e") | s.contains("E"))
    return ibis.ifelse(direct, cast, _shaped_number(fold_number_text(s), fmt))


def _let(value: ibis.Value, body) -> ibis.Value:
    """``body(value)`` with ``value`` computed once per row.

    SQL has no LET: every use of an expression repeats it, and the text of the parsers below would be
    repeated a dozen times per column (a 50 kB query for one spend file, slow to compile). A
    one-element ``list_apply`` binds the value to the lambda's parameter instead.
    """
    return ibis.array([value]).map(body)[0]




def _shaped_number(f: ibis.Value, fmt: NumberFormat) -> ibis.Value:
    """Folded text with currency, signs, parentheses and separators -> float64 (null when it does not fit).

    Once the whole text fits :data:`_NUMBER_SHAPE`, its number is its only run of digits and separators,
    its parentheses can only be its first and last characters, and its signs are its only ``-``/``+``:
    one extraction of that run and a few plain string functions take it apart, at a quarter of the cost
    of extracting the shape's groups one by one.
    """
    def value(core: ibis.Value) -> ibis.Value:
        digits = core
        for sep in fmt.separators:
            digits = digits.replace(sep, "")
        if fmt.decimal == ",":
            digits = digits.replace(",", ".")
        return digits.try_cast("float64")

    def shaped(text: ibis.Value) -> ibis.Value:
        n = text.length()
        minus = n - text.replace("-", "").length()
        plus = n - text.replace("+", "").length()
        paren = text.startswith("(")
        marks_fit = (paren == text.endswith(")")) & (minus + plus <= 1) & ~(paren & (minus > 0))
        core = text.re_extract(_NUMBER_RUN, 0)
        fits = text.re_search(_NUMBER_SHAPE) & marks_fit & core.re_search(fmt.core_pattern())
        magnitude = value(core)
        return ibis.ifelse(fits, ibis.ifelse(paren | (minus > 0), -magnitude, magnitude), ibis.null("float64"))

    return _let(f, shaped)


def number_problem(text: ibis.Value, fmt: NumberFormat, *, backend: Any = None) -> ibis.Value:
    """Why a (cleaned, non-null) text did not parse as a number under ``fmt``, as a short code.

    ``decimal_comma`` - it reads as a number with a decimal comma while the source declares ``.``;
    ``decimal_point`` - the reverse; ``grouping`` - a thousands separator that does not group three
    digits; ``sign`` - two signs, or a minus inside accounting parentheses; ``not_a_number`` - anything
    else. Only meaningful where :func:`parse_number_text` gave null. ``backend``: see :func:`backend_of`.
    """
    comma_number = r"^[0-9]{1,3}(?:[. ][0-9]{3})*,[0-9]+$|^[0-9]+,[0-9]{1,2}$"
    point_number = r"^[0-9]{1,3}(?:[, ][0-9]{3})*\.[0-9]+$|^[0-9]+\.[0-9]{1,2}$"
    d = re.escape(fmt.decimal)
    grouped = f"^[0-9]+(?:[,.' ][0-9]+)+(?:{d}[0-9]+)?$"

    def why(core: ibis.Value) -> ibis.Value:
        return ibis.cases(
            (core.re_search(fmt.core_pattern()), "sign"),
            (ibis.literal(fmt.decimal == ".") & core.re_search(comma_number), "decimal_comma"),
            (ibis.literal(fmt.decimal == ",") & core.re_search(point_number), "decimal_point"),
            (core.re_search(grouped), "grouping"),
            else_="not_a_number")

    def shaped(f: ibis.Value) -> ibis.Value:
        return ibis.ifelse(f.re_search(_NUMBER_SHAPE), _let(f.re_extract(_NUMBER_SHAPE, 4).strip(), why),
                           ibis.literal("not_a_number"))

    return _let(fold_number_text(text), shaped)


def date_problem(text: ibis.Value, date_format: str | None) -> ibis.Value:
    """Why a (cleaned, non-null) text did not parse as a date, as a short code.

    ``no_such_date`` - year-month-day shaped but not on the calendar (``2026-02-30``, month 13);
    ``day_month_order`` - ``03/04/2026``-shaped without a ``date_format`` (never guessed);
    ``not_a_date`` - anything else.
    """
    ymd = r"^[0-9]{4}[-/.年][0-9]{1,2}[-/.月][0-9]{1,2}|^[0-9]{8}"
    day = "(?:0?[1-9]|[12][0-9]|3[01])"
    dmy = f"^{day}[-/.]{day}[-/.][0-9]{{2,4}}"
    return ibis.cases((text.re_search(ymd), "no_such_date"),
                      (ibis.literal(date_format is None) & text.re_search(dmy), "day_month_order"),
                      else_="not_a_date")


def finite_or_null(num: ibis.Value) -> ibis.Value:
    """NaN and +/-inf -> null. Apply it to a *column* (a stored or projected value): on an expression
    the engine would evaluate the expression three times."""
    # abs() above the largest double rather than isinf(): Ibis compiles isinf() on Spark to FALSE
    return ibis.ifelse(num.isnan() | (num.abs() > _LARGEST_DOUBLE), ibis.null("float64"), num)


def parse_bool(col: ibis.Value, *, cleaned: bool = False) -> ibis.Value:
    """Text -> boolean (true/false, yes/no, 1/0, y/n, 是/否, opt_in/opt_out); other text -> null."""
    s = (col if cleaned else clean_text(col)).lower()
    return ibis.cases((_one_of(s, TRUE_WORDS), True), (_one_of(s, FALSE_WORDS), False), else_=ibis.null("boolean"))


def parse_gender(col: ibis.Value, *, cleaned: bool = False) -> ibis.Value:
    """Text -> ``'M'`` / ``'F'`` (m, male, man, 男, 先生 / f, female, woman, 女, 女士); other text -> null."""
    s = (col if cleaned else clean_text(col)).lower()
    return ibis.cases((_one_of(s, MALE_WORDS), "M"), (_one_of(s, FEMALE_WORDS), "F"), else_=ibis.null("string"))


def _one_of(s: ibis.Value, words: tuple[str, ...]) -> ibis.Value:
    """``s`` equals one of ``words``, as a chain of comparisons: DuckDB runs ``IN (<5 or more constants>)``
    as a join with the list, which does not keep the rows' order - and the stage numbers a file's rows by
    the order in which its parsed rows are stored (:func:`crmlib.ingest._sql_duckdb.create_numbered_table`)."""
    return ibis.or_(*[s == w for w in words])


def normalize_email(col: ibis.Value, *, backend: Any = None) -> ibis.Value:
    """Trimmed, lower-cased email, or null when it is not ``local@domain.tld`` (``backend``: see
    :func:`backend_of`)."""
    s = clean_text(col, backend=backend).lower()
    return ibis.ifelse(s.re_search(_EMAIL), s, ibis.null("string"))


def cn_mobile_e164(col: ibis.Value) -> ibis.Value:
    """The vectorized fast path: an 11-digit mainland mobile (any +86/0086/86 prefix, separators) -> E.164.

    Null for anything else (those values go to :func:`phone_to_e164`).
    """
    digits = col.cast("string").re_replace(r"[\s\-.()（）]", "")
    return ibis.ifelse(digits.re_search(_CN_MOBILE), "+86" + digits.re_extract(_CN_MOBILE, 1),
                       ibis.null("string"))


def phone_to_e164(value: str | None, region: str = schema_default("privacy.default_phone_region")) -> str | None:
    """One phone string -> E.164 with ``phonenumbers`` (``region`` for numbers without a country code).

    Returns None when ``phonenumbers`` cannot parse it or says it is not a valid number.
    """
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    text = str(value).strip()
    if not text:
        return None
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        num = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(num):
        return None
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


def phone_lookup(phones: ibis.Value | ibis.Table, *,
                 region: str = schema_default("privacy.default_phone_region"),
                 name: str = "phone_lookup") -> ibis.Table:
    """A table ``raw_phone -> phone`` (E.164 or null) for every distinct phone string in ``phones``.

    Distinct values only: CN mobiles by the fast path in the engine, the rest (usually few) one by one
    through ``phonenumbers`` in Python. The result is a scratch relation ``name`` on the backend that
    ``phones`` comes from (with ``<name>_fast`` and ``<name>_slow`` beside it).
    """
    col = phones if isinstance(phones, ibis.Value) else phones[phones.columns[0]]
    distinct = col.name("raw_phone").as_table().filter(lambda t: t.raw_phone.notnull()).distinct()
    fast = distinct.mutate(phone=cn_mobile_e164(distinct.raw_phone))
    fast = scratch_beside(distinct, f"{name}_fast", fast)
    # to Python: the distinct phone strings that are not mainland mobiles (at most one per contact row,
    # in practice a few per cent of them); the mobiles never leave the engine
    rest = fast.filter(fast.phone.isnull()).select("raw_phone").to_pandas()
    rest["phone"] = pd.Series([phone_to_e164(v, region) for v in rest["raw_phone"]], dtype="object")
    slow = scratch_beside(distinct, f"{name}_slow", rest.astype({"raw_phone": "string", "phone": "string"}),
                          schema=ibis.schema({"raw_phone": "string", "phone": "string"}))
    return scratch_beside(distinct, name, fast.filter(fast.phone.notnull()).union(slow))


