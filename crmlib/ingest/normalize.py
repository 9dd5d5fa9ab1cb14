"""Text to typed values, as Ibis expressions: timestamps, numbers, booleans, emails and phones.

Conventions
-----------
* Timestamps become **naive local time in ``run.timezone``**: a string with an explicit offset or
  ``Z`` is converted to that zone; a naive string is taken as already local. Accepted: the source's
  ``date_format`` (tried first), ISO 8601 (``2026-03-01``, ``2026-03-01 14:05[:09[.123]]``, with ``T``),
  ``2026/03/01[ 14:05[:09]]``, ``20260301``, ``20260301140509``, ``2026.03.01``, ``2026年3月1日``.
* Amounts: currency symbols/codes (``¥ ￥ $ € £ CNY RMB USD EUR``), spaces and thousands separators are
  stripped (``'¥1,234.50'`` -> 1234.5); NaN and infinities are not numbers.
* Phones: E.164 (``+8613800138000``). 11-digit mainland mobiles (optionally ``+86``/``0086``/``86``,
  with spaces, dashes, dots or brackets) take a vectorized fast path in the engine; every other distinct
  value goes through ``phonenumbers`` (default region ``privacy.default_phone_region``). Invalid -> null.
* Emails: trimmed and lower-cased; anything not ``local@domain.tld`` -> null.
"""

from __future__ import annotations

import ibis
import ibis.expr.datatypes as dt
import pandas as pd
import phonenumbers

from crmlib.engine import replace_temp_table

__all__ = [
    "clean_text", "parse_gender", "parse_number_text", "finite_or_null", "parse_timestamp", "parse_date",
    "parse_number", "parse_bool", "normalize_email",
    "cn_mobile_e164", "phone_to_e164", "phone_lookup", "TIMESTAMP_FORMATS", "TRUE_WORDS", "FALSE_WORDS",
]

TIMESTAMP_FORMATS = ("%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d", "%Y%m%d%H%M%S", "%Y%m%d",
                     "%Y.%m.%d %H:%M:%S", "%Y.%m.%d", "%Y-%m-%d %H:%M", "%Y年%m月%d日 %H:%M", "%Y年%m月%d日")
TRUE_WORDS = ("true", "t", "yes", "y", "1", "是", "opt_in", "opt-in", "subscribed")
FALSE_WORDS = ("false", "f", "no", "n", "0", "否", "opt_out", "opt-out", "unsubscribed")
MALE_WORDS = ("m", "male", "man", "男", "先生")
FEMALE_WORDS = ("f", "female", "woman", "女", "女士")
_OFFSET = r"\d:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|z|UTC|[+-]\d{2}(:?\d{2})?)$"
_MONEY_JUNK = r"[¥￥$€£,\s]|CNY|RMB|USD|EUR|元"
_CN_MOBILE = r"^(?:\+?86|0086)?(1[3-9]\d{9})$"
_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s.]+$"


@ibis.udf.scalar.builtin(name="try_strptime")
def _try_strptime(text: dt.string, fmt: dt.string) -> dt.timestamp:  # DuckDB: null when it fails
    ...


@ibis.udf.scalar.builtin(name="timezone")
def _to_zone(zone: dt.string, ts: dt.Timestamp(timezone="UTC")) -> dt.timestamp:  # naive wall time in zone
    ...


@ibis.udf.scalar.builtin(name="trim")
def _trim_spaces(text: dt.string) -> dt.string:  # DuckDB's one-argument trim: spaces, and fast
    ...


def clean_text(col: ibis.Value) -> ibis.Value:
    """Spaces trimmed at both ends; empty strings become null.

    Only spaces: Ibis' ``strip()`` trims a set of whitespace characters, which DuckDB runs ~3x slower
    (a tab or newline at the edge of a field is rare in exports and stays).
    """
    s = col.cast("string")
    # trim only where a space is at an edge: two LIKE tests cost less than trimming every value
    edged = s.like(" %") | s.like("% ")
    return ibis.ifelse(edged, _trim_spaces(s), s).nullif("")


def parse_timestamp(col: ibis.Value, *, timezone: str, date_format: str | None = None,
                    cleaned: bool = False) -> ibis.Value:
    """Text -> naive local timestamp in ``timezone`` (null when no accepted format matches).

    ``cleaned=True``: ``col`` already went through :func:`clean_text` (saves a second trim).
    """
    s = col if cleaned else clean_text(col)
    with_offset = _to_zone(timezone, s.replace("UTC", "Z").try_cast(dt.Timestamp(timezone="UTC")))
    naive = [s.try_cast("timestamp")] + [_try_strptime(s, f) for f in TIMESTAMP_FORMATS]
    if date_format:
        naive.insert(0, _try_strptime(s, date_format))
    # the offset regex only where an offset can be (longer than 'YYYY-MM-DD HH:MM:SS', or ending in Z)
    maybe_offset = (s.length() > 19) | s.endswith("Z") | s.endswith("z")
    has_offset = ibis.ifelse(maybe_offset, s.re_search(_OFFSET), False)
    return ibis.ifelse(has_offset, with_offset, ibis.coalesce(*naive))


def parse_date(col: ibis.Value, *, timezone: str, date_format: str | None = None,
               cleaned: bool = False) -> ibis.Value:
    """Text -> date (local), through :func:`parse_timestamp`."""
    return parse_timestamp(col, timezone=timezone, date_format=date_format, cleaned=cleaned).date()


def parse_number(col: ibis.Value, *, cleaned: bool = False) -> ibis.Value:
    """Text -> float64; currency marks and thousands separators stripped; NaN/inf -> null."""
    return finite_or_null(parse_number_text(col, cleaned=cleaned))


def parse_number_text(col: ibis.Value, *, cleaned: bool = False) -> ibis.Value:
    """Like :func:`parse_number` but NaN and infinities pass through (see :func:`finite_or_null`)."""
    s = col if cleaned else clean_text(col)
    return ibis.coalesce(s.try_cast("float64"), s.re_replace(_MONEY_JUNK, "").try_cast("float64"))


def finite_or_null(num: ibis.Value) -> ibis.Value:
    """NaN and +/-inf -> null. Apply it to a *column* (a stored or projected value): on an expression
    the engine would evaluate the expression three times."""
    return ibis.ifelse(num.isnan() | num.isinf(), ibis.null("float64"), num)


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
    the order in which its parsed rows are stored (:func:`crmlib.sql.create_numbered_table`)."""
    return ibis.or_(*[s == w for w in words])


def normalize_email(col: ibis.Value) -> ibis.Value:
    """Trimmed, lower-cased email, or null when it is not ``local@domain.tld``."""
    s = clean_text(col).lower()
    return ibis.ifelse(s.re_search(_EMAIL), s, ibis.null("string"))


def cn_mobile_e164(col: ibis.Value) -> ibis.Value:
    """The vectorized fast path: an 11-digit mainland mobile (any +86/0086/86 prefix, separators) -> E.164.

    Null for anything else (those values go to :func:`phone_to_e164`).
    """
    digits = col.cast("string").re_replace(r"[\s\-.()（）]", "")
    return ibis.ifelse(digits.re_search(_CN_MOBILE), "+86" + digits.re_extract(_CN_MOBILE, 1),
                       ibis.null("string"))


def phone_to_e164(value: str | None, region: str = "CN") -> str | None:
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


def phone_lookup(con, phones: ibis.Value | ibis.Table, *, region: str = "CN",
                 name: str = "phone_lookup") -> ibis.Table:
    """A table ``raw_phone -> phone`` (E.164 or null) for every distinct phone string in ``phones``.

    Distinct values only: CN mobiles by the fast path in the engine, the rest (usually few) one by one
    through ``phonenumbers`` in Python. ``con`` is the Ibis connection the result is stored in.
    """
    col = phones if isinstance(phones, ibis.Value) else phones[phones.columns[0]]
    distinct = col.name("raw_phone").as_table().filter(lambda t: t.raw_phone.notnull()).distinct()
    fast = distinct.mutate(phone=cn_mobile_e164(distinct.raw_phone))
    fast = replace_temp_table(con, f"{name}_fast", fast)
    rest = fast.filter(fast.phone.isnull()).select("raw_phone").to_pandas()
    rest["phone"] = pd.Series([phone_to_e164(v, region) for v in rest["raw_phone"]], dtype="object")
    slow = replace_temp_table(con, f"{name}_slow", rest.astype({"raw_phone": "string", "phone": "string"}),
                              schema=ibis.schema({"raw_phone": "string", "phone": "string"}))
    return replace_temp_table(con, name, fast.filter(fast.phone.notnull()).union(slow))


