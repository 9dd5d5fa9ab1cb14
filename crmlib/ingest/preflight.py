"""``crm validate`` opens the files: every problem a run would meet in its sources, found on a sample.

:func:`check_sources` reads each source the way the ingest stage does (:func:`crmlib.ingest.readers.read_source`)
but only its first :data:`SAMPLE_ROWS` data rows, into a throwaway in-memory engine, and types them with
:func:`crmlib.ingest.validate.validate_source`. So it finds, for every source at once: a missing or
unreadable file, a file whose content is another format than declared, text that does not decode with
the declared encoding (and which encoding does), a wrong delimiter (and which one fits), a mapped or
required column the header lacks (with the columns it has), an ambiguous Excel sheet or header - and
columns whose sampled values mostly do not parse (a wrong ``date_format`` or decimal separator), plus
two sources that are the same file.

A few bad values are not a problem here: the run quarantines such rows with a reason and goes on.
A column is reported when at least :data:`MIN_BAD_SHARE` of the sampled rows fail the same check, which
is a setting that does not fit the file rather than a stray row.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import Any

import ibis

from crmlib.ingest.errors import IngestError

__all__ = ["check_sources", "SAMPLE_ROWS", "MIN_BAD_SHARE"]

#: Data rows read from each source.
SAMPLE_ROWS = 1000
#: Share of the sampled rows failing one check from which the check is reported.
MIN_BAD_SHARE = 0.05
_MIN_BAD_ROWS = 3
# only the checks a setting can explain; missing values and future dates are the data's own business
_SETTING_CHECKS = ("bad_", "malformed_row", "invalid_")


def check_sources(params: dict) -> list[tuple[str, str]]:
    """Open every source of validated ``params`` and return every problem found, never raising.

    Parameters
    ----------
    params : dict
        Validated params (:func:`crmlib.params.load_params`): source paths are absolute.

    Returns
    -------
    list of (where, message)
        ``where`` names the source (``sources[3] store_pos (store_pos.csv)``); ``message`` is the whole
        text (it may span lines; it names row and column where one applies, and the fix). Empty when
        every source reads cleanly.
    """
    problems: list[tuple[str, str]] = []
    sources = params["sources"]
    problems += _duplicate_sources(params)
    run = params["run"]
    try:
        from crmlib.engine import Engine

        with tempfile.TemporaryDirectory(prefix="crm-validate-") as tmp, \
                Engine(Path(tmp) / "run", database=":memory:") as engine:
            for i, src in enumerate(sources):
                problems += [(_where(i, src), m) for m in _check_with_fixes(engine, src, run, params)]
            problems += _line_order_problems(engine, params)
    except Exception as exc:  # no engine at all (no disk space, ...): say so instead of raising
        problems.append(("sources", f"cannot open the sources to check them: {type(exc).__name__}: {exc}"))
    return problems


def _line_order_problems(engine: Any, params: dict) -> list[tuple[str, str]]:
    """An order_lines source whose orders source has no order_id column to join the lines on."""
    from crmlib.ingest.readers import read_source
    from crmlib.ingest.stage import orders_source_of

    sources = params["sources"]
    out = []
    for i, src in enumerate(sources):
        if src["kind"] != "order_lines":
            continue
        try:
            owner = orders_source_of(src, params)
            owner_src = next(s for s in sources if s["name"] == owner)
            raw = read_source(engine, owner_src, sample_rows=1)
            raw.discard_copy()
        except Exception:  # the orders source's own check reports why it cannot be read
            continue
        if "order_id" not in raw.canonical:
            out.append((_where(i, src), f"the lines refer to orders by order_id, but orders source {owner} has no "
                                        f"order_id column\n  How to fix: map the order number column of source "
                                        f"{owner} to order_id in its `columns:`"))
    return out


def _where(i: int, src: dict) -> str:
    return f"sources[{i}] {src['name']} ({Path(src['path']).name})"


def _duplicate_sources(params: dict) -> list[tuple[str, str]]:
    """Two sources that are one file or one content (:func:`crmlib.ingest.validate.duplicate_sources`), as
    (where, message) pairs - none when ``ingest.allow_duplicate_sources`` says that is meant."""
    if params["ingest"]["allow_duplicate_sources"]:
        return []
    try:
        from crmlib.ingest.validate import duplicate_sources
    except ImportError:  # an older validate module
        return []
    try:
        pairs = duplicate_sources(params)
    except Exception as exc:
        return [("sources", f"cannot compare the source files: {type(exc).__name__}: {exc}")]
    index = {s["name"]: i for i, s in enumerate(params["sources"])}
    out = []
    for a, b, why in pairs:
        where = f"sources[{index.get(a, '?')}] {a} and sources[{index.get(b, '?')}] {b}"
        out.append((where, f"the same data is listed twice and would be loaded twice: {why}\n"
                           "  How to fix: remove one of the two sources from `sources:`, or set "
                           "ingest.allow_duplicate_sources: true if loading it twice is meant"))
    return out


def _check_with_fixes(engine: Any, src: dict, run: dict, params: dict) -> list[str]:
    """The problems of one source; when one is a setting whose right value was sniffed (encoding,
    delimiter, format), the check goes on with that value to report what comes after it too."""
    messages: list[str] = []
    applied: dict = {}
    for _attempt in range(4):
        try:
            found = _check_source(engine, {**src, **applied}, run, params)
        except IngestError as exc:
            messages.append(_after(applied) + str(exc))
            if not exc.setting or all(applied.get(k) == v for k, v in exc.setting.items()):
                break
            applied.update(exc.setting)
            continue
        except Exception as exc:  # a check must never stop the others: report it as found
            messages.append(_after(applied) + f"cannot check this source: {type(exc).__name__}: "
                                              f"{str(exc).splitlines()[0] if str(exc) else ''}")
            break
        messages += [_after(applied) + m for m in found]
        break
    return messages


def _after(applied: dict) -> str:
    if not applied:
        return ""
    return "once " + ", ".join(f"`{k}: {json.dumps(v, ensure_ascii=False)}`" for k, v in applied.items()) + " is set: "


def _check_source(engine: Any, src: dict, run: dict, params: dict) -> list[str]:
    from crmlib.ingest.readers import read_source, rejected_rows
    from crmlib.ingest.validate import validate_source

    raw = read_source(engine, src, sample_rows=SAMPLE_ROWS)
    try:
        vs = validate_source(raw, timezone=run["timezone"], currency=run["currency"],
                             # future timestamps are the data's business, not a setting: never flag them here
                             now_local=dt.datetime(9999, 1, 1), future_tolerance_hours=0, keep_pii=False,
                             max_abs_amount=params["ingest"]["max_abs_amount"])
        t = vs.base  # the typed rows; duplicates are no setting's fault (and cost a join to find)
        if "_row_number" not in t.columns:
            t = t.mutate(_row_number=(ibis.row_number() + 1).cast("int64"))
        counts = {f"n_{c}": t[f"_nulled_{c}"].cast("int64").sum() for c in vs.nulled_columns}
        by_reason = (t.group_by("_reason").agg(n=ibis._.count(), first=t._row_number.min(), **counts)
                     .to_pyarrow().to_pylist())
        rejects = rejected_rows(engine, raw)
    finally:
        raw.discard_copy()
    n_rows = sum(int(r["n"]) for r in by_reason) + len(rejects)
    if n_rows == 0:
        return []
    if n_rows >= SAMPLE_ROWS and rejects and rejects[-1][0] == n_rows:  # the cut may split a quoted field
        rejects = rejects[:-1]
    threshold = max(_MIN_BAD_ROWS, MIN_BAD_SHARE * n_rows)
    messages = []
    for r in by_reason:
        reason = r["_reason"]
        if reason and reason.startswith(_SETTING_CHECKS) and r["n"] >= threshold:
            messages.append(f"{r['n']} of the first {n_rows} data rows would be quarantined as {reason} "
                            f"(first at row {r['first']}): check the source's settings for that column")
    for c in vs.nulled_columns:
        n = sum(int(r.get(f"n_{c}") or 0) for r in by_reason)
        if n >= threshold:
            messages.append(f"column {c!r}: {n} of the first {n_rows} values do not parse and would be set to "
                            "empty (the row is kept): check `date_format:` or the number settings")
    kinds: dict[str, list[int]] = {}
    for row, reason, _text in rejects:
        kinds.setdefault(reason, []).append(row)
    for reason, rows in kinds.items():
        if len(rows) >= threshold:
            messages.append(f"{len(rows)} of the first {n_rows} data rows do not split into the header's "
                            f"{len(raw.file_columns)} fields ({reason}; rows {', '.join(map(str, rows[:5]))}"
                            f"{', ...' if len(rows) > 5 else ''}): check `delimiter:` and that quoted fields "
                            "are closed")
    return messages
