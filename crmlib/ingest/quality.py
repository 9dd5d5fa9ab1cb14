"""Per-source accounting for ``data_quality.json``: every row read is loaded, quarantined or dropped.

``{"sources": {name: {rows_read, rows_loaded, rows_quarantined, duplicates_dropped, checks: {...}}}}``
with ``rows_read = rows_loaded + rows_quarantined + duplicates_dropped``. ``checks`` counts, per check:
each quarantine reason (``bad_date:order_ts``, ``malformed_row:too_many_fields``, ...), the duplicates
(``duplicate_order_id`` / ``duplicate_row``), ``identical_rows_kept`` (identical rows without an id,
kept as real repeats), ``invalid_<column>_nulled`` (optional values that did not parse, row kept),
and for contacts ``invalid_phone`` / ``invalid_email`` (normalized to null, row kept).
"""

from __future__ import annotations

import ibis

from crmlib.ingest.validate import DEDUP_BY_ID, ValidatedSource, identical_rows_kept

__all__ = ["source_quality", "check_reconciliation"]


def source_quality(vs: ValidatedSource, decided: ibis.Table, rejects: list[tuple[int, str, str]]) -> dict:
    """The data-quality entry of one source, from its materialized decided table and CSV rejects."""
    t = decided
    nulled = {f"n_{c}": t[f"_nulled_{c}"].cast("int64").sum() for c in vs.nulled_columns}
    groups = t.group_by(["_status", "_reason"]).agg(n=ibis._.count(), **nulled).to_pyarrow().to_pylist()
    counts: dict[str, int] = {}
    checks: dict[str, int] = {}
    for g in groups:
        counts[g["_status"]] = counts.get(g["_status"], 0) + int(g["n"])
        if g["_status"] == "quarantined":
            checks[g["_reason"]] = int(g["n"])
        for c in vs.nulled_columns:
            if g[f"n_{c}"]:
                checks[f"invalid_{c}_nulled"] = checks.get(f"invalid_{c}_nulled", 0) + int(g[f"n_{c}"])
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


def check_reconciliation(quality: dict) -> list[str]:
    """Sources whose counts do not add up (should be empty): ``rows_read != loaded + quarantined + dups``."""
    bad = []
    for name, q in quality["sources"].items():
        if q["rows_read"] != q["rows_loaded"] + q["rows_quarantined"] + q["duplicates_dropped"]:
            bad.append(name)
    return bad
