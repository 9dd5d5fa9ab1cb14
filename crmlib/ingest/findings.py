"""Key findings of the ingest page: a few plain sentences, each with its numbers and the decision it supports.

Findings only read what the ingest stage wrote (``tables/data_quality.json``, ``quarantine.parquet``,
``identity_map.parquet``, ``customers.parquet`` and ``warnings.jsonl``); beyond counting and summing their
rows they compute nothing. Numbers go through :mod:`crmlib.present`, sentences through
:func:`crmlib.i18n._`. Reports never name people: quarantined rows are counted, never quoted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crmlib.i18n import N_, _
from crmlib.present import fmt_count, fmt_money, fmt_percent
from crmlib.report import key_findings as findings_list
from crmlib.report import read_run_json, read_run_table
from crmlib.status import read_warnings

__all__ = ["key_findings", "findings_markdown", "STAGE"]

STAGE = "ingest"
MAX_FINDINGS = 6


def rows_finding(run_dir: Path) -> str | None:
    """Rows read, loaded, quarantined and dropped as duplicates, over all sources."""
    quality = read_run_json(run_dir, "data_quality")
    if not quality or not quality.get("sources"):
        return None
    total = {k: sum(int(s.get(k, 0)) for s in quality["sources"].values())
             for k in ("rows_read", "rows_loaded", "rows_quarantined", "duplicates_dropped")}
    return _("{loaded} of {read} input rows from {sources} files were loaded ({share}); {quarantined} were set "
             "aside with a reason and {duplicates} exact duplicates dropped, so every row is accounted for.").format(
        loaded=fmt_count(total["rows_loaded"]), read=fmt_count(total["rows_read"]),
        sources=fmt_count(len(quality["sources"])),
        share=fmt_percent(total["rows_loaded"] / total["rows_read"] if total["rows_read"] else float("nan"), na="n/a"),
        quarantined=fmt_count(total["rows_quarantined"]), duplicates=fmt_count(total["duplicates_dropped"]))


# canonical column names as a page shows them: the code in English (what the file's header is mapped to),
# a word in other languages
COLUMN_WORDS = {c: c for c in (
    N_("source_customer_id"), N_("order_id"), N_("order_ts"), N_("amount"), N_("currency"), N_("channel"),
    N_("event_ts"), N_("event_type"), N_("touch_ts"), N_("cost"), N_("date"), N_("impressions"), N_("clicks"),
    N_("experiment_id"), N_("variant"), N_("assigned_ts"), N_("is_control"), N_("response_ts"),
    N_("nps_score"), N_("csat"), N_("signup_ts"), N_("birth_date"), N_("consent_marketing"), N_("gender"),
    N_("loyalty_points"), N_("product_id"), N_("quantity"), N_("source_customer_id_or_anonymous_id"))}
# malformed_row:<what> codes of crmlib.ingest.readers
MALFORMED_WORDS = {c: c for c in (N_("too_many_fields"), N_("too_few_fields"), N_("unquoted_value"),
                                  N_("line_size_over_maximum"), N_("invalid_unicode"))}


def column_words(column: str) -> str:
    """A canonical column name in the page's language (the name itself in English and for other columns)."""
    return _(column) if column in COLUMN_WORDS or column in MALFORMED_WORDS else column


def reason_words(reason: str) -> str:
    """A quarantine reason code (``bad_number:amount (details)``) in plain words (``amount is not a number``)."""
    code, _sep, rest = str(reason).partition(":")
    column = rest.split(" (", 1)[0].strip()
    words = {"missing_value": _("{column} is empty"), "bad_number": _("{column} is not a number"),
             "bad_date": _("{column} is not a date"), "future_timestamp": _("{column} is in the future"),
             "out_of_range": _("{column} is out of range"), "negative_cost": _("{column} is negative"),
             "bad_boolean": _("{column} is not yes/no"), "bad_gender": _("{column} is not a gender"),
             "zero_quantity": _("{column} is zero"),
             "negative_quantity": _("{column} is negative on a sale (not a refund)"),
             "unknown_order": _("the line's order is not a loaded order"),
             "malformed_row": _("the line does not split into the header's fields ({column})")}
    return words[code].format(column=column_words(column)) if code in words and column else str(reason)


def reason_fix(reason: str, source: str = "") -> str:
    """What to do about a quarantine reason, in the page's language (the reason's own hint, in words).

    The quarantine table keeps the whole English reason; a page shows this short fix beside
    :func:`reason_words`.
    """
    code = str(reason).split(":", 1)[0]
    detail = str(reason).partition(" (")[2]
    checks = [
        ("looks like a decimal comma", _("set decimal: ',' on source {source}")),
        ("looks like a decimal point", _("set decimal: '.' on source {source}, or fix the value")),
        ("must group exactly three digits", _("fix the value, or set thousands: on source {source}")),
        ("could be day/month or month/day", _("set date_format: on source {source} (day or month first)")),
        ("ingest.max_abs_amount", _("fix the value, or raise ingest.max_abs_amount if such values are real")),
        ("is not an order of source", _("fix the line, or load the orders file it belongs to")),
        ("was quarantined in source", _("fix the order's own row first")),
        ("date_format", _("set date_format: on source {source}, or fix the value")),
    ]
    for phrase, fix in checks:
        if phrase in detail:
            return fix.format(source=source)
    if code == "malformed_row":
        return _("check delimiter: and that quoted fields are closed on source {source}").format(source=source)
    if code == "future_timestamp":
        return _("fix the time in the file, or set a later run.as_of")
    if code == "missing_value":
        return _("fill in the value in the file")
    return _("fix the value in the file")


def quarantine_finding(run_dir: Path, files: dict[str, str] | None = None) -> str | None:
    """The most frequent quarantine reason, its source and file, and the first row to look at."""
    q = read_run_table(run_dir, "quarantine", ["source", "reason", "row_number"])
    if q is None or q.empty:
        return None
    by_reason = (q.groupby(["source", "reason"]).agg(rows=("row_number", "size"), first_row=("row_number", "min"))
                 .reset_index().sort_values(["rows", "source", "reason"], ascending=[False, True, True]))
    top = by_reason.iloc[0]
    file_name = (files or {}).get(top["source"], top["source"])
    return _("The most common problem: {reason} in {rows} rows of {file} (first at row {row}); fix it in "
             "that file and re-run to recover them.").format(
        reason=reason_words(top["reason"]), file=file_name, rows=fmt_count(top["rows"]), row=fmt_count(top["first_row"]))


def identity_finding(run_dir: Path) -> str | None:
    """How many source records merged into how many people, and how many span several sources."""
    ids = read_run_table(run_dir, "identity_map", ["source"])
    customers = read_run_table(run_dir, "customers", ["sources"])
    if ids is None or customers is None or customers.empty:
        return None
    several = int(customers["sources"].map(lambda s: len(s) > 1 if s is not None else False).sum())
    return _("{records} customer records from {systems} systems were merged into {people} people; {several} of "
             "them ({share}) appear in more than one system, so their history is no longer split.").format(
        records=fmt_count(len(ids)), systems=fmt_count(ids["source"].nunique()), people=fmt_count(len(customers)),
        several=fmt_count(several), share=fmt_percent(several / len(customers)))


def buyers_finding(run_dir: Path, currency: str | None) -> str | None:
    """Customers who bought, their orders and net revenue: the totals the later pages start from."""
    customers = read_run_table(run_dir, "customers", ["orders", "revenue"])
    if customers is None or customers.empty:
        return None
    buyers = int((customers["orders"] > 0).sum())
    return _("{buyers} of the {people} people bought: {orders} orders and {revenue} net revenue after refunds, "
             "the totals the segmentation page starts from.").format(
        buyers=fmt_count(buyers), people=fmt_count(len(customers)), orders=fmt_count(customers["orders"].sum()),
        revenue=fmt_money(customers["revenue"].sum(), currency))


def salt_finding(run_dir: Path) -> str | None:
    """The default salt makes customer keys recomputable: say so with what to do."""
    quality = read_run_json(run_dir, "data_quality") or {}
    if quality.get("salt_source") != "default":
        return None
    return _("Customer keys use the public default salt: set CRM_PII_SALT to a secret before sharing audience "
             "files outside the team.")


def warning_findings(run_dir: Path) -> list[str]:
    """Problems the stage recorded while reading (a byte-order mark, skipped title rows, an empty file)."""
    return [_("Check {step}: {message}").format(step=w.get("step", ""), message=str(w.get("message", "")).rstrip("."))
            + "." for w in read_warnings(run_dir, STAGE)]


def key_findings(run_dir: str | Path, *, currency: str | None = None,
                 files: dict[str, str] | None = None) -> list[str]:
    """The page's key findings as plain sentences (at most :data:`MAX_FINDINGS`).

    Parameters
    ----------
    run_dir : path
        The run directory.
    currency : str, optional
        The run's currency code, written before money.
    files : dict, optional
        Source name -> file name, so a finding can say which file to fix.
    """
    run_dir = Path(run_dir)
    found = [f for f in (rows_finding(run_dir), quarantine_finding(run_dir, files), identity_finding(run_dir),
                         buyers_finding(run_dir, currency)) if f]
    found += warning_findings(run_dir)[:max(MAX_FINDINGS - len(found) - 1, 0)]
    salt = salt_finding(run_dir)
    return (found[:MAX_FINDINGS - 1] + [salt]) if salt else found[:MAX_FINDINGS]


def findings_markdown(sentences: list[str]) -> Any:
    """The findings as the page's HTML list (:func:`crmlib.report.key_findings`)."""
    return findings_list(sentences, empty=_('Nothing was loaded in this run.'))
