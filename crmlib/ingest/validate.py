"""Decide, for every row of a source, whether it is loaded, quarantined (with a reason) or a duplicate.

The decision is one Ibis expression over the raw text view (:mod:`crmlib.ingest.readers`), so the file
is scanned once, by the engine. Its result has, per file row:

* ``_row_number`` - the 1-based data row in the file,
* the canonical columns, typed (see :data:`COLUMN_TYPES`), and the extra columns as text,
* ``_status`` - ``loaded`` | ``quarantined`` | ``duplicate``,
* ``_reason`` - why a row is quarantined, ``<check>:<column>`` (first failing check wins), e.g.
  ``bad_date:order_ts``, ``bad_number:amount``, ``missing_value:source_customer_id``,
  ``future_timestamp:order_ts``, ``negative_cost:cost``, ``out_of_range:nps_score``, ``zero_quantity:quantity``
  (order lines; ``unknown_order:order_id`` and ``negative_quantity:quantity`` are decided by the stage,
  which knows the orders); bad numbers and
  dates add, in parentheses, what is wrong and how to fix it, e.g. ``bad_number:amount (amount does not
  fit decimal '.' / thousands ',': it looks like a decimal comma; set decimal: ',' on source
  eshop_orders)``. :func:`reason_check` gives the ``<check>:<column>`` part (the data-quality counts use
  it). The value itself is in ``_raw``, so that one reason groups many rows.
* ``_raw`` - the row as delimited text (quarantined rows only). Unless ``privacy.keep_pii``, name, email,
  phone and survey comments read ``<redacted>``, and so does every unmapped column of a contacts source
  and any unmapped column whose header names personal data (``wechat_id``, ``收货人``, ``address``, ...):
  an export's free columns (``备注``) hold phone numbers and names as often as not.
* ``_nulled_<column>`` flags - an *optional* value that did not parse was set to null (row kept),
* ``_grouped_<column>`` flags - a strict number column's text held a thousands separator (with the
  quarantine reasons, :func:`crmlib.ingest.quality.source_quality` tells a column that mixes decimal
  conventions: ``12,500`` read as 12500 beside ``12,50`` quarantined as a decimal comma),
* ``_row_hash`` - a 64-bit hash of the row's values, for :func:`identical_rows_kept` (kinds without
  whole-row deduplication; for orders only on rows without an ``order_id``).

Rules
-----
* A required column's value missing or unparseable quarantines the row; so does an unparseable
  amount/cost/score or event time even where the column is optional (a wrong number would
  silently change revenue or ROI). Other optional values (birth date, signup time, consent, loyalty
  points, impressions/clicks) that do not parse are nulled and counted as checks
  (``invalid_<column>_nulled``): dropping the row would lose the money or identity it carries.
* Numbers are parsed under the source's ``decimal``/``thousands`` (:class:`~crmlib.ingest.normalize.NumberFormat`),
  never guessed. A number that is not finite (``inf``, ``nan``, beyond the float range) is a bad number;
  one whose magnitude exceeds ``ingest.max_abs_amount`` (and always beyond 1e15, where float64 no
  longer holds cents exactly and sums of such values overflow downstream) is ``out_of_range``. Both
  quarantine on the columns above and null the value on the others.
* Dates: see :func:`~crmlib.ingest.normalize.parse_timestamp`. ``03/04/2026`` is never guessed as
  day-first or month-first: without ``date_format`` such a value is a bad date whose reason says to set it.
* **Future timestamp**: an event time later than the run's wall-clock time (in ``run.timezone``) plus
  ``ingest.future_tolerance_hours``.
* **Duplicates** (among rows that passed validation; the first by file row is kept):
  orders - the same ``order_id`` again (this covers exact repeats of whole rows that have an id);
  contacts, experiments, surveys, order_lines - an exact repeat of the whole row (they carry a customer
  or order id).
  Orders without an ``order_id`` and events, touchpoints and spend rows have no id: identical rows
  are **kept** (two identical CDs bought the same day are two purchases) and counted as the check
  ``identical_rows_kept`` by :func:`identical_rows_kept`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import zoneinfo
from dataclasses import dataclass, field
from typing import Any, Callable

import ibis

from crmlib.ingest.errors import IngestError
from crmlib.ingest.normalize import (NumberFormat, backend_of, clean_text, date_problem, finite_or_null, number_format,
                                     number_problem, parse_bool, parse_date, parse_gender, parse_number_text,
                                     parse_timestamp)
from crmlib.ingest.readers import RawSource
from crmlib.params import REQUIRED_COLUMNS, effective_delimiter, schema_default

__all__ = ["COLUMN_TYPES", "ValidatedSource", "validate_source", "with_status", "run_now_local", "identical_rows_kept",
           "DEDUP_BY_ID", "DEDUP_WHOLE_ROW", "reason_check", "duplicate_sources",
           "FINITE_SAFE_BOUND", "redacted_columns"]

# canonical column -> type, per kind; columns not listed are text (trimmed, empty -> null)
COLUMN_TYPES: dict[str, dict[str, str]] = {
    "contacts": {"signup_ts": "timestamp", "birth_date": "date", "consent_marketing": "boolean", "gender": "gender",
                 "loyalty_points": "number"},
    "orders": {"order_ts": "timestamp", "amount": "number"},
    "events": {"event_ts": "timestamp"},
    "touchpoints": {"touch_ts": "timestamp", "cost": "number"},
    "spend": {"date": "date", "cost": "number", "impressions": "number", "clicks": "number"},
    "experiments": {"assigned_ts": "timestamp", "is_control": "boolean"},
    "surveys": {"response_ts": "timestamp", "nps_score": "number", "csat": "number"},
    "order_lines": {"quantity": "number", "amount": "number"},
}
# optional columns whose bad values still quarantine the row (they carry money or the event time)
_STRICT_OPTIONAL = {"touchpoints": {"cost"}, "surveys": {"nps_score", "csat"}, "order_lines": {"quantity", "amount"}}
# the event time checked against the future
_EVENT_TIME = {"orders": "order_ts", "events": "event_ts", "touchpoints": "touch_ts", "spend": "date",
               "experiments": "assigned_ts", "surveys": "response_ts"}
_RANGES = {"nps_score": (0, 10), "csat": (1, 5), "impressions": (0, None), "clicks": (0, None)}
DEDUP_BY_ID = {"orders": "order_id"}
PII_COLUMNS = ("name", "email", "phone")
DEDUP_WHOLE_ROW = ("contacts", "experiments", "surveys", "order_lines")
_REASON_WORD = {"timestamp": "bad_date", "date": "bad_date", "number": "bad_number", "boolean": "bad_boolean", "gender": "bad_gender"}
# beyond 2**53 ~ 9e15 float64 no longer holds whole cents; 1e15 leaves room for sums over many rows
FINITE_SAFE_BOUND = 1e15
# words in an unmapped header that say the column holds personal data (matched in the lower-cased header)
_PERSONAL_HEADER_WORDS = ("name", "mail", "phone", "mobile", "tel", "wechat", "weixin", "qq", "address", "addr",
                          "contact", "id_card", "idcard", "passport", "姓名", "名字", "手机", "电话", "邮箱", "微信",
                          "地址", "收货人", "联系人", "身份证", "备注", "remark", "note", "comment")


@dataclass
class ValidatedSource:
    """The typed, judged rows of one source (unexecuted Ibis expressions) and what it knows.

    ``base`` has every column but ``_status``; :meth:`decided` adds it (duplicates need a second look
    at the data, best over ``base`` materialized once).
    """

    raw: RawSource
    base: ibis.Table
    nulled_columns: list[str]
    value_columns: list[str]
    # strict number columns with a ``_grouped_<column>`` flag: the text held a thousands separator
    grouped_columns: list[str] = field(default_factory=list)

    def decided(self, base: ibis.Table | None = None,
                materialize: Callable[[str, ibis.Table], ibis.Table] | None = None) -> ibis.Table:
        """``base`` (default: the unmaterialized expression) with ``_status``; see :func:`with_status`."""
        return with_status(self.base if base is None else base, self.raw.kind, value_columns=self.value_columns,
                           materialize=materialize, name=f"dups_{self.raw.name}")

    @property
    def table(self) -> ibis.Table:
        """The decided rows as one expression (small data and tests).

        For a source read without row numbers (CSV, JSON lines) they come from ``row_number() OVER ()``
        here, which keeps the scan's order but runs on one thread; the stage stores ``base`` instead
        (:func:`crmlib.ingest._sql_duckdb.create_numbered_table`).
        """
        base = self.base
        if "_row_number" not in base.columns:
            base = base.mutate(_row_number=_scan_order_number()).relocate("_row_number")
        return self.decided(base)


def run_now_local(timezone: str, now: dt.datetime | None = None) -> dt.datetime:
    """The run's wall-clock time as a naive local time in ``timezone``."""
    now = now or dt.datetime.now(dt.timezone.utc)
    if now.tzinfo is None:
        return now
    return now.astimezone(zoneinfo.ZoneInfo(timezone)).replace(tzinfo=None)


def reason_check(reason: str) -> str:
    """The ``<check>:<column>`` part of a quarantine reason (without the explanation in parentheses)."""
    return reason.split(" (", 1)[0]


def redacted_columns(raw: RawSource, keep_pii: bool) -> set[str]:
    """The columns whose values ``_raw`` (the quarantine table) replaces by ``<redacted>``."""
    if keep_pii:
        return set()
    hidden = set(PII_COLUMNS) | {"comment"}
    if raw.kind == "contacts":
        hidden |= set(raw.extras)  # a contacts export's free columns are about the person
    hidden |= {c for c in raw.extras if any(w in c.lower() for w in _PERSONAL_HEADER_WORDS)}
    return hidden


def duplicate_sources(params: dict) -> list[tuple[str, str, str]]:
    """Pairs of sources that would load the same data twice: ``(source a, source b, why)``.

    Two sources are the same data when their paths resolve to one file (``orders.csv`` and
    ``./orders.csv``, a symlink) or when their files have the same content (sha256; only files of equal
    size are hashed). Missing files are left to the checks that report them.
    """
    files = []
    for src in params["sources"]:
        path = src["path"]
        if os.path.isfile(path):
            files.append((src["name"], path, os.path.realpath(path), os.path.getsize(path)))
    pairs: list[tuple[str, str, str]] = []
    digests: dict[str, str] = {}
    for i, (a, path_a, real_a, size_a) in enumerate(files):
        for b, path_b, real_b, size_b in files[i + 1:]:
            if real_a == real_b:
                pairs.append((a, b, f"both read the file {real_a}"))
            elif size_a == size_b and size_a > 0:
                for real in (real_a, real_b):
                    if real not in digests:
                        digests[real] = _sha256(real)
                if digests[real_a] == digests[real_b]:
                    pairs.append((a, b, f"{path_a} and {path_b} have the same content (sha256 {digests[real_a][:16]}...)"))
    return pairs


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def validate_source(raw: RawSource, *, timezone: str, currency: str, now_local: dt.datetime,
                    future_tolerance_hours: float = schema_default("ingest.future_tolerance_hours"),
                    keep_pii: bool = schema_default("privacy.keep_pii"),
                    max_abs_amount: float | None = schema_default("ingest.max_abs_amount"),
                    backend: Any = None) -> ValidatedSource:
    """Type every column and decide every row of ``raw`` (see the module docstring for the rules).

    Parameters
    ----------
    raw : RawSource
        From :func:`crmlib.ingest.readers.read_source`.
    timezone : str
        ``run.timezone``: naive timestamps are local to it; offsets are converted to it.
    currency : str
        ``run.currency``, for orders without a currency column or value.
    now_local : datetime
        The run's wall-clock time, naive local (:func:`run_now_local`).
    future_tolerance_hours : float
        ``ingest.future_tolerance_hours``.
    keep_pii : bool
        ``privacy.keep_pii``; when false, personal columns are replaced by ``<redacted>`` in ``_raw``
        (:func:`redacted_columns`).
    max_abs_amount : float, optional
        ``ingest.max_abs_amount``: a number of larger magnitude is out of range (null: only the fixed
        :data:`FINITE_SAFE_BOUND`).
    backend : Engine, backend module or engine kind, optional
        The engine that will run the expressions (:func:`crmlib.ingest.normalize.backend_of`; default
        DuckDB): dates and trimming are read with its functions.

    Raises
    ------
    IngestError
        When the source's ``decimal``/``thousands`` cannot be used together.
    """
    kind, t = raw.kind, raw.table
    be = backend_of(backend)
    types = COLUMN_TYPES[kind]
    date_format = raw.source["date_format"]
    if date_format:
        try:  # Spark translates the strftime format to a Java pattern, and refuses what has no equivalent
            be.try_parse_timestamp(ibis.literal(""), date_format)
        except ValueError as exc:
            raise IngestError(str(exc), source=raw.name, path=raw.path,
                              hint="write date_format with %Y %y %m %d %j %H %I %M %S %f %p %b %B %a %A "
                                   "and literal text") from None
    try:
        fmt = number_format(raw.source)
    except ValueError as exc:
        raise IngestError(str(exc), source=raw.name, path=raw.path,
                          hint="set decimal: '.' or ',' and thousands: ',', '.', ' ', \"'\", '' or null "
                               "(the usual one for the decimal mark) on this source") from None
    max_abs = FINITE_SAFE_BOUND if max_abs_amount is None else min(float(max_abs_amount), FINITE_SAFE_BOUND)
    required = set(REQUIRED_COLUMNS[kind])
    strict = required | _STRICT_OPTIONAL.get(kind, set()) | {_EVENT_TIME.get(kind)}
    limit = now_local + dt.timedelta(hours=future_tolerance_hours)
    all_cols = raw.canonical + raw.extras

    # Step 1: trim each column once, then parse the trimmed text. The trimmed text of typed columns is
    # kept beside the value (to tell "missing" from "did not parse"); the original text is kept under
    # positional names (for _raw).
    numbered = "_row_number" in t.columns  # else the stage numbers rows when it stores them
    trimmed = t.select(**({"_row_number": t._row_number.cast("int64")} if numbered else {}),
                       **{f"_in_{c}": clean_text(t[c], backend=be) for c in raw.canonical},
                       **{f"_o{i}": t[c] for i, c in enumerate(all_cols)})
    parsed: dict[str, ibis.Value] = {"_row_number": trimmed._row_number} if numbered else {}
    for col in raw.canonical:
        kind_of = types.get(col, "text")
        parsed[col] = _PARSERS[kind_of](trimmed[f"_in_{col}"], timezone, date_format, fmt, be)
        if kind_of != "text":
            parsed[f"_in_{col}"] = trimmed[f"_in_{col}"]
    if kind == "orders":
        cur = trimmed._in_currency.upper() if "currency" in raw.canonical else ibis.null("string")
        parsed["currency"] = ibis.coalesce(cur, ibis.literal(currency))
    for i, col in enumerate(all_cols):
        if col in raw.extras:
            parsed[col] = trimmed[f"_o{i}"]
    parsed.update({f"_o{i}": trimmed[f"_o{i}"] for i in range(len(all_cols))})
    p = trimmed.select(**parsed)
    # why a number or date did not parse: computed on the failing rows only, once per column
    why = {}
    for col in [c for c in raw.canonical if c in strict]:
        kind_of = types.get(col, "text")
        if kind_of == "number":
            failed = p[f"_in_{col}"].notnull() & p[col].isnull()
            why[f"_why_{col}"] = ibis.ifelse(failed, number_problem(p[f"_in_{col}"], fmt, backend=be), ibis.null("string"))
        elif kind_of in ("timestamp", "date"):
            failed = p[f"_in_{col}"].notnull() & p[col].isnull()
            why[f"_why_{col}"] = ibis.ifelse(failed, date_problem(p[f"_in_{col}"], date_format), ibis.null("string"))
    if why:
        p = p.mutate(**why)

    # Step 2: decide, on the parsed columns.
    reasons: list[tuple[ibis.Value, str]] = []
    nulled: dict[str, ibis.Value] = {}
    typed: dict[str, ibis.Value] = {}
    grouped: dict[str, ibis.Value] = {}
    for col in raw.canonical:
        kind_of = types.get(col, "text")
        value = finite_or_null(p[col]) if kind_of == "number" else p[col]
        text = p[f"_in_{col}"] if kind_of != "text" else value
        if col in required:
            reasons.append((text.isnull(), f"missing_value:{col}"))
        if kind_of == "number":
            huge = value.abs() > max_abs
            if col in strict:
                reasons += [(p[f"_why_{col}"] == code, msg) for code, msg in
                            _number_reasons(col, raw.name, fmt).items()]
                reasons.append((text.notnull() & value.isnull(), _non_finite_reason(col)))
                reasons.append((huge, _huge_reason(col, max_abs)))
                if fmt.separators:  # for the mixed-marks check of crmlib.ingest.quality
                    grouped[col] = ibis.or_(*[text.contains(sep) for sep in fmt.separators]).fill_null(False)
            else:
                nulled[col] = (text.notnull() & value.isnull()) | huge.fill_null(False)
                value = ibis.ifelse(huge.fill_null(False), ibis.null("float64"), value)
        elif kind_of in ("timestamp", "date"):
            unparsed = text.notnull() & value.isnull()
            if col in strict:
                reasons += [(p[f"_why_{col}"] == code, msg) for code, msg in
                            _date_reasons(col, raw.name, date_format).items()]
            else:
                nulled[col] = unparsed
        elif kind_of != "text":
            unparsed = text.notnull() & value.isnull()
            if col in strict:
                reasons.append((unparsed, f"{_REASON_WORD[kind_of]}:{col}"))
            else:
                nulled[col] = unparsed
        if col == _EVENT_TIME.get(kind):
            bound = ibis.literal(limit.date()) if kind_of == "date" else ibis.literal(limit)
            reasons.append((value > bound, f"future_timestamp:{col}"))
        if col == "cost" and kind in ("spend", "touchpoints"):
            reasons.append((value < 0, "negative_cost:cost"))
        if col == "quantity" and kind == "order_lines":  # the sign is checked against the order's by the stage
            reasons.append((value == 0, "zero_quantity:quantity (a line holds at least one unit: fix the value "
                                        "in the file, or leave the line out)"))
        if col in _RANGES:
            lo, hi = _RANGES[col]
            bad = value < lo if hi is None else (value < lo) | (value > hi)
            if col in strict:
                reasons.append((bad, f"out_of_range:{col}"))
            else:
                nulled[f"{col}_range"] = bad
                value = ibis.ifelse(bad.fill_null(False), ibis.null(value.type()), value)
        typed[col] = value
    if kind in ("events", "touchpoints"):
        ids = [p[c] for c in ("source_customer_id", "anonymous_id") if c in raw.canonical]
        reasons.append((ibis.and_(*[i.isnull() for i in ids]), "missing_value:source_customer_id_or_anonymous_id"))
    if kind == "orders":
        typed["currency"] = p.currency
    for col in raw.extras:
        typed[col] = p[col]

    reason = (ibis.cases(*[(cond.fill_null(False), label) for cond, label in reasons],
                         else_=ibis.null("string")) if reasons else ibis.null("string"))
    p = p.mutate(_reason=reason)
    delim = effective_delimiter(raw.source)
    pii = redacted_columns(raw, keep_pii)
    raw_text = ibis.literal(delim).join([
        ibis.ifelse(p[f"_o{i}"].isnull(), "", "<redacted>") if c in pii else _quote_field(p[f"_o{i}"], delim)
        for i, c in enumerate(all_cols)])
    # an order line's order is checked after the scan (it needs the orders source, see
    # crmlib.ingest.stage.check_line_orders): the lines that check quarantines need their text then
    keep_text = p._reason.notnull() | ibis.literal(kind == "order_lines")
    decided = p.select(
        **({"_row_number": p._row_number} if numbered else {}),
        **_rebind(typed, p),
        _reason=p._reason,
        _raw=ibis.ifelse(keep_text, raw_text, ibis.null("string")),
        **{f"_nulled_{c}": flag.fill_null(False) for c, flag in _rebind(nulled, p).items()},
        **{f"_grouped_{c}": flag for c, flag in _rebind(grouped, p).items()},
    )
    if kind not in DEDUP_WHOLE_ROW:
        # identical_rows_kept looks for repeats among millions of rows: with a stored hash of each row's
        # values it groups 8-byte integers and compares whole rows only where a hash repeats
        row_hash = _values_hash(decided, list(typed))
        key = DEDUP_BY_ID.get(kind)
        if key in typed:  # rows with an id are never "identical rows kept"
            row_hash = ibis.ifelse(decided[key].isnull(), row_hash, ibis.null("int64"))
        decided = decided.mutate(_row_hash=row_hash)
    return ValidatedSource(raw=raw, base=decided, nulled_columns=list(nulled), value_columns=list(typed),
                           grouped_columns=list(grouped))


def _scan_order_number() -> ibis.Value:
    """1-based row number in scan order (no ORDER BY: DuckDB keeps the scan's order for an unordered window)."""
    return (ibis.row_number() + 1).cast("int64")


# (cleaned text, run.timezone, date_format, NumberFormat, backend module) -> typed value
_PARSERS = {
    "timestamp": lambda c, tz, dfmt, nfmt, be: parse_timestamp(c, timezone=tz, date_format=dfmt, cleaned=True,
                                                               backend=be),
    "date": lambda c, tz, dfmt, nfmt, be: parse_date(c, timezone=tz, date_format=dfmt, cleaned=True, backend=be),
    "number": lambda c, tz, dfmt, nfmt, be: parse_number_text(c, fmt=nfmt, cleaned=True),  # finite_or_null: step 2
    "boolean": lambda c, tz, dfmt, nfmt, be: parse_bool(c, cleaned=True),
    "gender": lambda c, tz, dfmt, nfmt, be: parse_gender(c, cleaned=True),
    "text": lambda c, tz, dfmt, nfmt, be: c,
}


def _number_reasons(col: str, source: str, fmt: NumberFormat) -> dict[str, str]:
    """Quarantine reason per :func:`~crmlib.ingest.normalize.number_problem` code."""
    fits = f"{col} does not fit {fmt.describe()}"
    return {
        "decimal_comma": f"bad_number:{col} ({fits}: it looks like a decimal comma; set decimal: ',' on source {source})",
        "decimal_point": (f"bad_number:{col} ({fits}: it looks like a decimal point; set decimal: '.' on source "
                          f"{source}, or fix the value)"),
        "grouping": (f"bad_number:{col} ({fits}: a thousands separator must group exactly three digits; fix the "
                     f"value, or set thousands: on source {source})"),
        "sign": f"bad_number:{col} ({col} has two signs or a minus inside parentheses; fix the value in the file)",
        "not_a_number": (f"bad_number:{col} ({col} is not a number (read with {fmt.describe()}, currency marks "
                         f"allowed); fix the value in the file)"),
    }


def _non_finite_reason(col: str) -> str:
    return (f"bad_number:{col} ({col} is not a finite number (inf, nan, or beyond the float range); fix the "
            f"value in the file)")


def _huge_reason(col: str, bound: float) -> str:
    return (f"out_of_range:{col} (|{col}| is larger than {bound:g}, the ingest.max_abs_amount bound; fix the "
            f"value, or raise ingest.max_abs_amount if such values are real)")


def _date_reasons(col: str, source: str, date_format: str | None) -> dict[str, str]:
    """Quarantine reason per :func:`~crmlib.ingest.normalize.date_problem` code."""
    accepted = ("ISO 8601 2026-03-01[ 14:05[:09]] with an optional +08:00/Z offset, 2026/3/1, 20260301, "
                "2026年3月1日, or an Excel serial day")
    if date_format:
        other = (f"{col} matches neither date_format {date_format!r} nor {accepted}; fix the value, or "
                 f"date_format on source {source}")
    else:
        other = f"{col} is not a date in an accepted format ({accepted}); set date_format: on source {source}"
    return {
        "no_such_date": (f"bad_date:{col} ({col} is not a calendar date (month 1-12, a day the month has); fix "
                         f"the value in the file)"),
        "day_month_order": (f"bad_date:{col} ({col} could be day/month or month/day and is never guessed; set "
                            f"date_format: '%d/%m/%Y' or '%m/%d/%Y' on source {source})"),
        "not_a_date": f"bad_date:{col} ({other})",
    }


def _rebind(exprs: dict[str, ibis.Value], table: ibis.Table) -> dict[str, ibis.Value]:
    """Expressions built on an earlier projection of ``table`` re-expressed on ``table`` itself."""
    return {k: table.bind(v)[0] if hasattr(table, "bind") else v for k, v in exprs.items()}


def _quote_field(col: ibis.Value, delim: str) -> ibis.Value:
    s = col.cast("string").fill_null("")
    needs = s.contains(delim) | s.contains('"') | s.contains("\n")
    return ibis.ifelse(needs, '"' + s.replace('"', '""') + '"', s)


def with_status(base: ibis.Table, kind: str, *, value_columns: list[str],
                materialize: Callable[[str, ibis.Table], ibis.Table] | None = None,
                name: str = "dups") -> ibis.Table:
    """``base`` plus ``_status``: ``quarantined`` (a reason), ``duplicate`` or ``loaded``.

    Both kinds of duplicate are found by one pass that keeps only the repeated rows (stored with
    ``materialize`` when given, so that every later use of the result joins a small table instead of
    repeating the pass), then joined back:

    * Orders: the first valid row of each ``order_id`` (by file row) is kept. An aggregate keeps only
      the ids that occur more than once: far cheaper than a window partitioned by order_id that would
      sort every column of every row. It groups the ids' 64-bit hashes first and the ids themselves only
      where a hash repeats (exact: a collision alone makes no duplicate): 10M orders, 1.16 -> 0.83 s.
    * Contacts, experiments, surveys and order lines (whole-row repeats): a window over all values
      of the valid rows (NULLs compare equal there, as they must for "identical rows") numbers the
      repeats; their row numbers are the result. The window sorts only the rows whose values' 64-bit
      hash repeats (one aggregate of the hashes finds them), not every valid row.
    """
    ok = base._reason.isnull()
    if kind in DEDUP_BY_ID and DEDUP_BY_ID[kind] in base.columns:
        key = DEDUP_BY_ID[kind]
        valid = base.filter(ok & base[key].notnull())
        repeated = (valid.group_by(_h=valid[key].hash()).agg(_n=ibis._.count())
                    .filter(ibis._._n > 1).select("_h"))
        valid = valid.filter(valid[key].hash().isin(repeated._h))
        firsts = (valid.group_by(_k=valid[key])
                  .agg(_first=valid._row_number.min(), _n=ibis._.count())
                  .filter(ibis._._n > 1)
                  .select("_k", "_first"))
        if materialize is not None:
            firsts = materialize(name, firsts)
        joined = base.left_join(firsts, base[key] == firsts._k)
        dup = joined._reason.isnull() & joined._first.notnull() & (joined._row_number != joined._first)
        status = ibis.cases((joined._reason.notnull(), "quarantined"), (dup, "duplicate"), else_="loaded")
        return joined.mutate(_status=status).drop("_k", "_first")
    if kind in DEDUP_WHOLE_ROW:
        valid = base.filter(ok)
        # only rows whose values' hash repeats can repeat: the window that sorts every value column runs on
        # those alone (exact: a collision alone makes no duplicate). 14.8M order lines: 17.8 -> 8.4 CPU-s
        row_hash = _values_hash(valid, value_columns)
        repeated = (valid.select(_h=row_hash).group_by("_h").agg(_n=ibis._.count())
                    .filter(ibis._._n > 1).select("_h"))
        valid = valid.filter(row_hash.isin(repeated._h))
        rank = ibis.row_number().over(group_by=[valid[c] for c in value_columns], order_by=valid._row_number)
        ranked = valid.select(_dup_row=valid._row_number, _rank=rank)
        repeats = ranked.filter(ranked._rank > 0).select("_dup_row")
        if materialize is not None:
            repeats = materialize(name, repeats)
        joined = base.left_join(repeats, base._row_number == repeats._dup_row)
        status = ibis.cases((joined._reason.notnull(), "quarantined"), (joined._dup_row.notnull(), "duplicate"),
                            else_="loaded")
        return joined.mutate(_status=status).drop("_dup_row")
    return base.mutate(_status=ibis.cases((~ok, "quarantined"), else_="loaded"))


def _values_hash(t: ibis.Table, columns: list[str]) -> ibis.Value:
    """A 64-bit hash of ``columns`` that is equal wherever the values are (NULLs alike).

    A float's ``-0.0`` is hashed as ``0.0``: the window that compares the values holds them equal, and an
    engine's hash need not (adding ``0.0`` turns ``-0.0`` into ``0.0`` on every engine).
    """
    return ibis.struct({c: t[c] + 0.0 if t[c].type().is_floating() else t[c] for c in columns}).hash()


def identical_rows_kept(t: ibis.Table, kind: str, value_columns: list[str]) -> ibis.Value:
    """How many loaded rows repeat an earlier identical loaded row without having an id (kept, counted).

    Orders: rows without ``order_id``; events, touchpoints, spend: all rows. 0 for other kinds.
    With the ``_row_hash`` of :func:`validate_source` (a hash of ``value_columns``), the rows are first
    grouped by hash and only rows whose hash repeats are compared column by column (exact: a hash
    collision alone counts nothing). Grouping tens of millions of rows by every column needs far more
    memory and about three times the time.
    """
    if kind in DEDUP_WHOLE_ROW:
        return ibis.literal(0)
    if kind in DEDUP_BY_ID and DEDUP_BY_ID[kind] in t.columns:
        # the id test first: the engine applies it on the scan, before the duplicates join behind _status
        t = t.filter(t[DEDUP_BY_ID[kind]].isnull())
    if "_row_hash" in t.columns:
        hashes = t.filter(t._status == "loaded").select("_row_hash")
        repeated = hashes.group_by("_row_hash").agg(_n=ibis._.count()).filter(ibis._._n > 1)
        t = t.filter(t._row_hash.isin(repeated._row_hash))
    rows = t.filter(t._status == "loaded")
    groups = rows.group_by(value_columns).agg(n=rows.count())
    return (groups.n - 1).sum().fill_null(0)
