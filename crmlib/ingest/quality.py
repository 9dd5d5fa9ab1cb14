"""Per-source accounting for ``data_quality.json``: every row read is loaded, quarantined or dropped.

``{"sources": {name: {rows_read, rows_loaded, rows_quarantined, duplicates_dropped, checks: {...}}}}``
with ``rows_read = rows_loaded + rows_quarantined + duplicates_dropped``. ``checks`` counts, per check:
each quarantine reason by its ``<check>:<column>`` part (``bad_date:order_ts``, ``malformed_row:too_many_fields``,
...; the explanation in the quarantine table's reason is left out), the duplicates
(``duplicate_order_id`` / ``duplicate_row``), ``identical_rows_kept`` (identical rows without an id,
kept as real repeats), ``invalid_<column>_nulled`` (optional values that did not parse, row kept),
and for contacts ``invalid_phone`` / ``invalid_email`` (normalized to null, row kept), and
``mixed_decimal_marks:<column>`` (values read with a thousands separator in a column whose other values
look like the other decimal convention; see :func:`quality_warnings`).
"""

from __future__ import annotations

import ibis

from crmlib.ingest.validate import DEDUP_BY_ID, ValidatedSource, identical_rows_kept, reason_check

__all__ = ["source_quality", "check_reconciliation", "quality_warnings"]


def source_quality(vs: ValidatedSource, decided: ibis.Table, rejects: list[tuple[int, str, str]]) -> dict:
    """The data-quality entry of one source, from its materialized decided table and CSV rejects."""
    t = decided
    nulled = {f"n_{c}": t[f"_nulled_{c}"].cast("int64").sum() for c in vs.nulled_columns}
    grouped = {f"g_{c}": t[f"_grouped_{c}"].cast("int64").sum() for c in vs.grouped_columns}
    groups = t.group_by(["_status", "_reason"]).agg(n=ibis._.count(), **nulled, **grouped).to_pyarrow().to_pylist()
    counts: dict[str, int] = {}
    checks: dict[str, int] = {}
    for g in groups:
        counts[g["_status"]] = counts.get(g["_status"], 0) + int(g["n"])
        if g["_status"] == "quarantined":  # one check per <check>:<column>, whatever the explanation
            check = reason_check(g["_reason"])
            checks[check] = checks.get(check, 0) + int(g["n"])
        for c in vs.nulled_columns:
            if g[f"n_{c}"]:
                checks[f"invalid_{c}_nulled"] = checks.get(f"invalid_{c}_nulled", 0) + int(g[f"n_{c}"])
    checks.update(_mixed_decimal_marks(groups, vs.grouped_columns))
    for _row, reason, _text in rejects:
        checks[reason] = checks.get(reason, 0) + 1
    if counts.get("duplicate"):
        checks["duplicate_order_id" if vs.raw.kind in DEDUP_BY_ID else "duplicate_row"] = counts["duplicate"]
    value_cols = [c for c in t.columns if not c.startswith("_")]
    kept = int(identical_rows_kept(t, vs.raw.kind, value_cols).to_pyarrow().as_py() or 0)
    if kept:
        checks["identical_rows_kept"] = kept
    loaded, quarantined, dups = counts.get("loaded", 0), counts.get("quarantined", 0) + len(rejects), counts.get("duplicate", 0)
    return {"rows_read": loaded + quarantined + dups, "rows_loaded": loaded, "rows_quarantined": quarantined,
            "duplicates_dropped": dups, "checks": dict(sorted(checks.items()))}


_OTHER_CONVENTION = ("it looks like a decimal comma", "it looks like a decimal point")


def _mixed_decimal_marks(groups: list[dict], columns: list[str]) -> dict[str, int]:
    """``mixed_decimal_marks:<column>``: loaded values read with a thousands separator, in a column where
    other values were quarantined as written in the other decimal convention.

    Under the default, ``12,500`` is 12500 by declaration; beside ``12,50`` (a decimal comma) in the same
    column it may well be 12.5. The rows stay loaded as declared; the check (and the warning the stage
    makes of it, :func:`quality_warnings`) says to look at the source's ``decimal``.
    """
    out = {}
    for c in columns:
        other = sum(int(g["n"]) for g in groups if g["_status"] == "quarantined"
                    and reason_check(g["_reason"]) == f"bad_number:{c}"
                    and any(w in g["_reason"] for w in _OTHER_CONVENTION))
        read_grouped = sum(int(g[f"g_{c}"] or 0) for g in groups if g["_status"] == "loaded")
        if other and read_grouped:
            out[f"mixed_decimal_marks:{c}"] = read_grouped
    return out


def quality_warnings(name: str, entry: dict) -> list[str]:
    """Warnings for the operator from one source's data-quality entry (a column mixing decimal marks)."""
    out = []
    for check, n in entry["checks"].items():
        if check.startswith("mixed_decimal_marks:"):
            col = check.split(":", 1)[1]
            out.append(f"source {name}: {n} {col} values were read with a thousands separator while other {col} "
                       f"values of the file look like the other decimal convention and were quarantined; if "
                       f"the file writes decimal commas, set decimal: ',' on source {name} (with decimal "
                       f"points, fix the quarantined values)")
    return out


def check_reconciliation(quality: dict) -> list[str]:
    """Sources whose counts do not add up (should be empty): ``rows_read != loaded + quarantined + dups``."""
    bad = []
    for name, q in quality["sources"].items():
        if q["rows_read"] != q["rows_loaded"] + q["rows_quarantined"] + q["duplicates_dropped"]:
            bad.append(name)
    return bad
