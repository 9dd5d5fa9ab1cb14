"""The ingest stage: sources -> validated rows -> identities -> the run's tables, and report helpers.

A thin notebook calls one function per cell::

    ctx = crmlib.context.open_run(params_path, run_dir)
    summary = run_ingest(ctx)            # reads, validates, resolves identities, writes the tables
    rows_by_source(ctx.engine, ctx.params)       # what happened to each source's rows
    quarantine_reasons(ctx.engine, ctx.params)   # why rows were quarantined, with counts
    identity_links(ctx.engine, ctx.params)       # identity links by rule
    customer_overview(ctx.engine, ctx.params)    # counts, never people
    plot_monthly_orders(monthly_orders_by_channel(ctx.engine, ctx.params))

Tables written (``run_dir/tables``): orders, touchpoints, events, spend, experiments, surveys, order_lines (each only
when the params have a source of that kind), customers, identity_map, identity_links, quarantine,
data_quality.json. Row-level work stays in the engine, DuckDB or Spark alike (no SQL here: what differs
lives in the engine's backend and in the readers). What reaches Python is bounded by distinct values, never
rows: counts; the distinct phone strings that are not mainland mobiles (``phonenumbers``, at most one per
contact row); the distinct survey comments of a source (jieba, at most one per response); the rejected
lines of a file (at most ``max(MAX_MALFORMED_LINES, 1 %)`` of its lines).

Privacy: ``customer_key`` is a salted hash. The salt is the ``CRM_PII_SALT`` environment variable,
else ``privacy.salt``, else :data:`DEFAULT_SALT` (documented, public: keys are then reproducible by
anyone with the data; the summary warns).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import ibis
import pandas as pd

from crmlib import progress
from crmlib.asof import as_of_end, write_as_of
from crmlib.engine import Engine
from crmlib.ingest.customers import build_customers, order_totals
from crmlib.ingest.errors import IngestError
from crmlib.ingest.normalize import normalize_email, phone_lookup
from crmlib.ingest.quality import check_reconciliation, quality_warnings, source_quality
from crmlib.ingest.readers import RawSource, read_source, rejected_rows, store_numbered
from crmlib.ingest.validate import (ValidatedSource, duplicate_sources, redacted_columns,
                                    run_now_local, validate_source)
from crmlib.status import record_warning

__all__ = ["IngestSummary", "run_ingest", "ingest", "resolve_salt", "DEFAULT_SALT", "rows_by_source",
           "quarantine_reasons", "identity_links", "customer_overview", "monthly_orders_by_channel",
           "rows_view", "quarantine_view", "identity_view", "customer_overview_view",
           "FACT_COLUMNS", "MAX_MALFORMED_LINES"]

DEFAULT_SALT = "crmlib-default-salt-v1"
MAX_MALFORMED_LINES = 200

# output table -> (column, type) in contract order; the fact tables also get row_number and extras
FACT_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "orders": [("customer_key", "string"), ("source", "string"), ("source_customer_id", "string"),
               ("order_id", "string"), ("order_ts", "timestamp"), ("amount", "float64"),
               ("currency", "string"), ("channel", "string"), ("store_id", "string"),
               ("status", "string"), ("items", "string")],
    "touchpoints": [("customer_key", "string"), ("anonymous_id", "string"), ("touch_ts", "timestamp"),
                    ("channel", "string"), ("campaign_id", "string"), ("touch_type", "string"),
                    ("cost", "float64"), ("source", "string"), ("source_customer_id", "string")],
    "events": [("customer_key", "string"), ("anonymous_id", "string"), ("event_ts", "timestamp"),
               ("event_type", "string"), ("page", "string"), ("utm_source", "string"),
               ("utm_medium", "string"), ("utm_campaign", "string"), ("device", "string"),
               ("source", "string"), ("source_customer_id", "string")],
    "spend": [("date", "date"), ("channel", "string"), ("campaign_id", "string"), ("cost", "float64"),
              ("impressions", "float64"), ("clicks", "float64"), ("source", "string")],
    "experiments": [("experiment_id", "string"), ("customer_key", "string"), ("variant", "string"),
                    ("assigned_ts", "timestamp"), ("is_control", "boolean"), ("source", "string"),
                    ("source_customer_id", "string")],
    # comment_terms: the countable words of the comment (crmlib.text.comment_terms), never the comment
    "surveys": [("customer_key", "string"), ("response_ts", "timestamp"), ("nps_score", "float64"),
                ("csat", "float64"), ("category", "string"), ("comment_terms", "array<string>"),
                ("source", "string"), ("source_customer_id", "string")],
    # customer_key, order_ts and refund come from the line's order (see _line_orders)
    "order_lines": [("customer_key", "string"), ("order_id", "string"), ("order_ts", "timestamp"),
                    ("product_id", "string"), ("quantity", "float64"), ("amount", "float64"),
                    ("product_name", "string"), ("category", "string"), ("brand", "string"),
                    ("refund", "boolean"), ("source", "string")],
}
_CONTACT_ATTRS = [("name", "string"), ("gender", "string"), ("birth_date", "date"), ("city", "string"),
                  ("province", "string"), ("signup_ts", "timestamp"), ("consent_marketing", "boolean"),
                  ("loyalty_tier", "string"), ("linked_ids", "string")]


@dataclass
class IngestSummary:
    """What :func:`run_ingest` did: counts per source, customers, tables written, warnings, timings."""

    quality: dict
    n_customers: int
    n_records: int
    tables: list[str]
    links_by_rule: pd.DataFrame
    salt_source: str
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def rows(self) -> pd.DataFrame:
        """rows_read / rows_loaded / rows_quarantined / duplicates_dropped per source."""
        return _rows_frame(self.quality)

    def __repr__(self) -> str:
        tot = self.rows[["rows_read", "rows_loaded", "rows_quarantined", "duplicates_dropped"]].sum()
        return (f"IngestSummary(sources={len(self.quality['sources'])}, rows_read={int(tot.rows_read)}, "
                f"loaded={int(tot.rows_loaded)}, quarantined={int(tot.rows_quarantined)}, "
                f"duplicates={int(tot.duplicates_dropped)}, customers={self.n_customers}, "
                f"salt={self.salt_source}, warnings={len(self.warnings)})")

    def _repr_markdown_(self) -> str:
        # a report cell that ends with the summary shows a sentence, never the Python repr
        from crmlib.i18n import _
        from crmlib.present import fmt_count

        tot = self.rows[["rows_read", "rows_loaded", "rows_quarantined", "duplicates_dropped"]].sum()
        return _("{read} rows read from {sources} sources: {loaded} loaded, {quarantined} quarantined, {duplicates} "
                 "duplicates dropped; {customers} customers.").format(
            read=fmt_count(tot.rows_read), sources=fmt_count(len(self.quality["sources"])),
            loaded=fmt_count(tot.rows_loaded), quarantined=fmt_count(tot.rows_quarantined),
            duplicates=fmt_count(tot.duplicates_dropped), customers=fmt_count(self.n_customers))


def resolve_salt(params: dict) -> tuple[str, str]:
    """``(salt, where it came from)``: env ``CRM_PII_SALT``, else ``privacy.salt``, else the default."""
    env = os.environ.get("CRM_PII_SALT")
    if env:
        return env, "env:CRM_PII_SALT"
    if params["privacy"]["salt"]:
        return params["privacy"]["salt"], "params:privacy.salt"
    return DEFAULT_SALT, "default"


def analysis_end(params: dict) -> dt.datetime | None:
    """End of the analysis window (naive local, exclusive: :func:`crmlib.asof.as_of_end`) of the later of
    ``run.as_of`` and ``segmentation.clv.holdout_end``.

    With ``run.as_of`` set, a timestamp after this (plus ``ingest.future_tolerance_hours``) is quarantined as
    a future timestamp, so a run on fixed data gives the same result whatever day it runs. Without it, the
    run's wall-clock time is the cutoff.
    """
    as_of = params["run"]["as_of"]
    if not as_of:
        return None
    holdout = params["segmentation"]["clv"]["holdout_end"]
    last = max(dt.date.fromisoformat(str(d)) for d in (as_of, holdout) if d)
    return as_of_end(last).to_pydatetime()


def run_ingest(ctx: Any, *, now: dt.datetime | None = None) -> IngestSummary:
    """Run the whole ingest stage for a :class:`crmlib.context.RunContext` (see :func:`ingest`)."""
    return ingest(ctx.engine, ctx.params, now=now)


def ingest(engine: Engine, params: dict, *, now: dt.datetime | None = None,
           resolve: Callable | None = None, keep_scratch: bool = False) -> IngestSummary:
    """Read, validate and deduplicate every source, resolve identities, write the run's tables.

    Parameters
    ----------
    engine : Engine
        The run's engine; the tables go to ``engine.tables_dir``.
    params : dict
        Validated params (:func:`crmlib.params.load_params`).
    now : datetime, optional
        The run's wall-clock time (aware, or naive local); default now. Future timestamps are judged
        against it.
    resolve : callable, optional
        Identity resolution with the signature of :func:`crmlib.ingest.identity.resolve_identities`
        (default that function).
    keep_scratch : bool
        Keep the staging tables in the engine database (for debugging).

    Raises
    ------
    IngestError
        For input that cannot be used at all (missing/empty file, undecodable text, unmapped required
        column, a file whose lines mostly do not split into the header's fields).
    """
    timings: dict[str, float] = {}
    warnings_: list[str] = []
    run = params["run"]
    tz = run["timezone"]
    now_local = run_now_local(tz, now)
    future_cutoff = analysis_end(params) or now_local
    salt, salt_source = resolve_salt(params)
    if salt_source == "default":
        warnings_.append("customer_key uses the public default salt: set CRM_PII_SALT (or privacy.salt) "
                         "so keys cannot be recomputed from raw ids by anyone")
    tolerance = float(params["ingest"]["future_tolerance_hours"])
    keep_pii = bool(params["privacy"]["keep_pii"])
    max_abs_amount = params["ingest"]["max_abs_amount"]
    warnings_ += _check_duplicate_sources(engine, params)

    engine.forget()  # the run tables are about to change; and no ids_* relation of an earlier call is kept
    for src in params["sources"]:  # scratch left by an earlier failed run on this connection
        engine.drop(f"ids_{src['name']}")

    # 1. read + validate + dedup: one scan per source, materialized once
    clock = time.perf_counter()
    decided: dict[str, tuple[ValidatedSource, ibis.Table]] = {}
    quality: dict[str, dict] = {}
    quarantine_parts: list[ibis.Table] = []
    # order lines are checked against their orders source's decided rows: those go first
    for src in sorted(params["sources"], key=lambda s: s["kind"] == "order_lines"):
        progress.step(f"reading {src['name']}", done=len(decided), total=len(params["sources"]), unit="sources")
        raw = read_source(engine, src)
        warnings_ += raw.warnings
        for message in raw.warnings:  # a BOM that overrode the encoding, skipped title rows, no data rows
            record_warning(engine, "ingest", f"read {raw.name}", message)
        vs = validate_source(raw, timezone=tz, currency=run["currency"], now_local=future_cutoff,
                             future_tolerance_hours=tolerance,
                             keep_pii=keep_pii, max_abs_amount=max_abs_amount, backend=engine)
        base = store_numbered(engine, raw, vs.base)  # one scan of the file, numbered
        rejects = rejected_rows(engine, raw)
        raw.discard_copy()  # the rows are stored: a transcoded copy of the file (raw PII) goes at once

        if rejects:
            base = _renumber_after_rejects(engine, raw, base, rejects)
            # a line that does not split cannot be redacted field by field: all of it, when it may hold PII
            personal = raw.kind == "contacts" or bool(redacted_columns(raw, keep_pii) & {*raw.canonical, *raw.extras})
            # at most max(MAX_MALFORMED_LINES, 1 % of the rows) lines (_renumber_after_rejects refuses more)
            quarantine_parts.append(engine.scratch(f"malformed_{raw.name}", pd.DataFrame({
                "source": raw.name, "row_number": [r[0] for r in rejects], "reason": [r[1] for r in rejects],
                "raw": [r[2] if keep_pii or not personal else f"<redacted: malformed {raw.kind} line>"
                        for r in rejects]}).astype({"row_number": "int64"}),
                schema=ibis.schema({"source": "string", "row_number": "int64", "reason": "string", "raw": "string"})))
        if raw.kind == "order_lines":
            owner = orders_source_of(src, params)
            base = check_line_orders(engine, raw, base, decided[owner][1], owner)
        table = vs.decided(base, materialize=engine.scratch)
        quality[raw.name] = source_quality(vs, table, rejects)
        for message in quality_warnings(raw.name, quality[raw.name]):
            warnings_.append(message)
            record_warning(engine, "ingest", raw.name, message)
        decided[raw.name] = (vs, table)
        # quarantined <=> a reason: a filter on the stored column, which the engine applies before the
        # duplicates join and on the scan itself
        q = table.filter(table._reason.notnull())
        quarantine_parts.append(q.select(source=ibis.literal(raw.name), row_number=q._row_number,
                                         reason=q._reason, raw=q._raw))
    quality = {s["name"]: quality[s["name"]] for s in params["sources"]}  # data_quality.json in params order
    timings["read_validate"] = time.perf_counter() - clock

    # 2. identity records: contacts (normalized) + ids seen in every other kind
    clock = time.perf_counter()
    region = params["privacy"]["default_phone_region"]
    progress.step("identity records")
    records, contacts, invalid = _identity_records(engine, params, decided, region=region)
    for name, checks in invalid.items():
        quality[name]["checks"].update({k: v for k, v in checks.items() if v})
        quality[name]["checks"] = dict(sorted(quality[name]["checks"].items()))
    timings["records"] = time.perf_counter() - clock

    clock = time.perf_counter()
    if resolve is None:
        from crmlib.ingest.identity import resolve_identities as resolve
    ident = params["ingest"]["identity"]
    progress.step("identity resolution")
    result = resolve(engine, records, method=ident["method"],
                     match_threshold=float(ident["match_threshold"]), salt=salt)
    id_map = result.identity_map
    id_map = engine.scratch("ingest_identity_map", id_map.select("source", "source_customer_id",
                                                                 "customer_key", "match_rule"))
    links = result.links_by_rule if isinstance(result.links_by_rule, pd.DataFrame) else engine.to_pandas(result.links_by_rule)
    if not keep_scratch:  # free the memory for the fact tables
        engine.drop("ingest_identity_records")
    timings["identity"] = time.perf_counter() - clock

    # 3. customers, identity map, quarantine, quality
    clock = time.perf_counter()
    progress.step("customers")
    tags = params["ingest"]["tags"]
    appearances, appearance_names = _appearances(engine, decided, params, id_map)
    if contacts is not None:
        contacts = contacts.join(id_map, ["source", "source_customer_id"]).select(contacts, id_map.customer_key)
    customers = build_customers(id_map, _keyed_order_totals(engine, params, decided, id_map), contacts,
                                appearances, tags=tags, keep_pii=keep_pii, orders_are_totals=True,
                                source_names=appearance_names)
    engine.write_table("customers", customers)
    engine.write_table("identity_map", id_map.order_by(["source", "source_customer_id"]))
    engine.write_table("identity_links", links)
    quarantine = quarantine_parts[0]
    for p in quarantine_parts[1:]:
        quarantine = quarantine.union(p)
    engine.write_table("quarantine", quarantine.order_by(["source", "row_number"]))
    report = {"sources": quality, "generated_at": now_local.isoformat(timespec="seconds"),
              "timezone": tz, "salt_source": salt_source}
    bad = check_reconciliation(report)
    if bad:  # a bug, not bad input: say so loudly
        raise RuntimeError(f"row accounting does not reconcile for sources {bad}")
    engine.write_json("data_quality", report)
    written = ["customers", "identity_map", "identity_links", "quarantine"]
    n_customers = int(engine.table("customers").count().execute())
    timings["customers"] = time.perf_counter() - clock

    # 4. fact tables with customer_key (the customers table above is built from order totals, not from them)
    clock = time.perf_counter()
    stitch = _cookie_map(decided, params, id_map)
    if stitch is not None:  # both events and touchpoints join it: build it once
        stitch = engine.scratch("ingest_cookie_map", stitch)
    for kind in FACT_COLUMNS:
        parts = [_fact_rows(engine, vs, table, params, id_map, stitch, decided) for vs, table in decided.values()
                 if vs.raw.kind == kind]
        if not parts:
            continue
        expr = parts[0]
        for p in parts[1:]:
            expr = expr.union(p)
        progress.step(f"writing {kind}")
        engine.write_table(kind, expr)
        written.append(kind)
    timings["facts"] = time.perf_counter() - clock

    if not keep_scratch:
        for name in decided:
            for relation in (f"decided_{name}_orders", f"decided_{name}_renumbered", f"decided_{name}",
                             f"decided_{name}_rows",
                             f"dups_{name}", f"raw_{name}", f"ids_{name}", f"malformed_{name}",
                             f"comment_terms_{name}"):
                engine.drop(relation)
        for relation in ("ingest_contacts", "ingest_identity_map", "ingest_cookie_map"):  # records: dropped above
            engine.drop(relation)
        engine.forget()  # the ids_* relations are dropped
    write_as_of(engine, params)  # the run's analysis date, resolved once for every later stage
    return IngestSummary(quality=report, n_customers=n_customers, n_records=int(result.n_records),
                         tables=written, links_by_rule=links, salt_source=salt_source,
                         warnings=warnings_, timings=timings)


# -- steps ---------------------------------------------------------------------------------------------
def _check_duplicate_sources(engine: Engine, params: dict) -> list[str]:
    """Refuse two sources that are one file or one content (they would double the rows), unless
    ``ingest.allow_duplicate_sources``: then each pair is a warning (returned and recorded for the run)."""
    pairs = duplicate_sources(params)
    if not pairs:
        return []
    found = [f"sources {a!r} and {b!r}: {why}" for a, b, why in pairs]
    if not params["ingest"]["allow_duplicate_sources"]:
        raise IngestError("the same data is listed as two sources and would be loaded twice (" + "; ".join(found) + ")",
                          hint="remove one of the two sources from `sources:`, or set "
                               "ingest.allow_duplicate_sources: true if loading it twice is meant")
    messages = [f"{f}; both are loaded (ingest.allow_duplicate_sources is true), so their rows count twice"
                for f in found]
    for message in messages:
        record_warning(engine, "ingest", "sources", message)
    return messages


def _renumber_after_rejects(engine: Engine, raw: RawSource, table: ibis.Table,
                            rejects: list[tuple[int, str, str]]) -> ibis.Table:
    """Give good rows their file row numbers back when DuckDB skipped rejected lines before them.

    Good row ``i`` (1-based among good rows) is file row ``i + #{j : a_j - j < i}`` where ``a_j`` is the
    j-th rejected row (1-based j): ``a_j - j`` good rows precede reject ``j``.
    """
    n_rows = int(table.count().execute()) + len(rejects)
    if len(rejects) > max(MAX_MALFORMED_LINES, n_rows // 100):
        kinds = sorted({r[1] for r in rejects})
        raise IngestError(
            f"{len(rejects)} of {n_rows} lines do not split into the header's {len(raw.file_columns)} fields "
            f"({', '.join(kinds)}; first at row {rejects[0][0]}: {rejects[0][2][:80]!r})",
            source=raw.name, path=raw.path, row=rejects[0][0],
            hint="check `delimiter:` (and that quoted fields are closed) for this source")
    rows = sorted(r[0] for r in rejects)
    shift = sum((ibis.literal(a - j) < table._row_number).cast("int64") for j, a in enumerate(rows, start=1))
    return engine.scratch(f"decided_{raw.name}_renumbered", table.mutate(_row_number=table._row_number + shift))


def orders_source_of(src: dict, params: dict) -> str:
    """The name of the orders source an ``order_lines`` source's ``order_id`` refers to.

    ``orders_source``, else the params' only orders source (the params check refuses several without it).
    """
    if src.get("orders_source"):
        return src["orders_source"]
    names = [s["name"] for s in params["sources"] if s["kind"] == "orders"]
    if len(names) != 1:
        raise IngestError(f"the order lines cannot be joined to their orders: the params have {len(names)} "
                          f"orders sources ({', '.join(names) or 'none'})", source=src["name"],
                          hint="set orders_source: <the name of the orders source> on this source")
    return names[0]


def check_line_orders(engine: Engine, raw: RawSource, base: ibis.Table, orders: ibis.Table,
                      orders_name: str) -> ibis.Table:
    """``base`` (an order_lines source's stored rows) with the lines whose order is not loaded quarantined.

    A line whose ``order_id`` is not in the orders source, or only on rows of it that were quarantined,
    gets the reason ``unknown_order:order_id`` (which of the two, in words); it is never dropped silently.
    A negative quantity is returned units: right on a line of a refund order (negative amount), quarantined
    as ``negative_quantity:quantity`` on a line of a sale.
    The check runs before the duplicate check, like every validation, so that the row accounting holds.

    Parameters
    ----------
    engine : Engine
        The run's engine (the lines the check quarantines are stored in its scratch database).
    raw : RawSource
        The order_lines source.
    base : ibis.Table
        Its validated, numbered rows (``_reason`` null where valid; ``_raw`` kept for every row).
    orders : ibis.Table
        The orders source's decided rows (with ``_status``).
    orders_name : str
        The orders source's name, for the reasons.

    Raises
    ------
    IngestError
        When the orders source has no ``order_id`` column to join on.
    """
    if "order_id" not in orders.columns:
        raise IngestError(f"the order lines refer to orders by order_id, but orders source {orders_name} has no "
                          "order_id column", source=raw.name, path=raw.path,
                          hint=f"map the order number column of source {orders_name} to order_id in its "
                               "`columns:` (e.g. {receipt_no: order_id})")
    o = orders.filter(orders.order_id.notnull())
    loaded = o._status == "loaded"
    known = o.group_by(_order=o.order_id).agg(_order_loaded=loaded.any(),
                                               _order_refund=(loaded & (o.amount < 0)).any())
    j = base.left_join(known, base.order_id == known._order)
    # a refund order returns units: its lines' quantities are negative; a sale's never are
    sign_ok = (j.quantity.isnull() | (j.quantity > 0) | j._order_refund.fill_null(True)
               if "quantity" in base.columns else ibis.literal(True))
    reason = ibis.cases(
        (j._reason.notnull(), j._reason),
        (j._order.isnull(), ibis.literal(f"unknown_order:order_id (the line's order_id is not an order of source "
                                         f"{orders_name}; fix the line, or load the orders file it belongs to)")),
        (~j._order_loaded, ibis.literal(f"unknown_order:order_id (the line's order was quarantined in source "
                                        f"{orders_name}; fix that order row)")),
        (~sign_ok, ibis.literal(f"negative_quantity:quantity (a negative quantity on a line of a sale; only "
                                f"refund orders (negative amount in source {orders_name}) return units: fix "
                                f"the value in the file)")),
        else_=ibis.null("string"))
    # only the lines this check quarantines are stored (row number and reason), not a second copy of every
    # line: the stored rows join that small table wherever they are read (14.8M lines: 20.7 -> 5.6 CPU-s)
    failed = j.filter(j._reason.isnull()).select(_line_row=j._row_number, _line_reason=reason)
    failed = engine.scratch(f"decided_{raw.name}_orders", failed.filter(failed._line_reason.notnull()))
    checked = base.left_join(failed, base._row_number == failed._line_row)
    return checked.mutate(_reason=ibis.coalesce(checked._reason, checked._line_reason)).drop("_line_row",
                                                                                             "_line_reason")


def _line_orders(src: dict, params: dict, decided: dict, id_map: ibis.Table) -> ibis.Table:
    """Per loaded order of an order_lines source's orders source: customer_key, order_ts and refund.

    ``refund`` is true for a line of an order with a negative amount (the orders source's sign); the
    line's own amount stays as written.
    """
    owner = orders_source_of(src, params)
    owner_src = next(s for s in params["sources"] if s["name"] == owner)
    _vs, t = decided[owner]
    loaded = t.filter((t._status == "loaded") & t.order_id.notnull())
    keyed = _keyed(loaded, owner_src, id_map)
    return keyed.select(_oid=keyed.order_id, _customer_key=keyed.customer_key, _order_ts=keyed.order_ts,
                        _refund=keyed.amount < 0)


def _namespace(src: dict) -> str:
    return src["id_source"] or src["name"]


def _col(t: ibis.Table, name: str, typ: str) -> ibis.Value:
    return t[name].cast(typ) if name in t.columns else ibis.null(typ)


def _identity_records(engine: Engine, params: dict, decided: dict, *, region: str
                      ) -> tuple[ibis.Table, ibis.Table | None, dict[str, dict[str, int]]]:
    """One record per (source namespace, source_customer_id) for identity resolution.

    Contacts give attributes (email/phone normalized; the first loaded row of an id wins); every other
    source's ids become bare records in their namespace (``id_source`` or the source's own name).
    Returns the records table, the contact rows for customer attributes, and invalid email/phone counts.
    """
    contact_parts, phone_parts, id_parts, invalid = [], [], [], {}
    for priority, src in enumerate(params["sources"]):
        vs, t = decided[src["name"]]
        loaded = t.filter(t._status == "loaded")
        if src["kind"] == "contacts":
            first = loaded.mutate(_k=ibis.row_number().over(group_by=loaded.source_customer_id,
                                                            order_by=loaded._row_number))
            first = first.filter(first._k == 0)
            contact_parts.append(first.select(
                source=ibis.literal(src["name"]), source_customer_id=first.source_customer_id,
                _priority=ibis.literal(priority) * 10_000_000_000 + first._row_number,
                raw_email=_col(first, "email", "string"), raw_phone=_col(first, "phone", "string"),
                **{c: _col(first, c, typ) for c, typ in _CONTACT_ATTRS}))
            phone_parts.append(loaded.select(raw_phone=_col(loaded, "phone", "string")))
        elif "source_customer_id" in t.columns:
            id_parts.append(_distinct_ids(engine, src, t).select(source=ibis.literal(_namespace(src)),
                                                                 source_customer_id="source_customer_id"))
    rec_schema = {"source": "string", "source_customer_id": "string", "name": "string", "email": "string",
                  "phone": "string", "gender": "string", "birth_date": "date", "city": "string",
                  "linked_ids": "string"}
    contacts = None
    if contact_parts:
        c = contact_parts[0]
        for p in contact_parts[1:]:
            c = c.union(p)
        # the phones of all loaded contact rows (a superset of the first rows' phones): looked up without
        # the first-row window, so that the contact rows are stored once, with their phones
        phones = ibis.union(*phone_parts, distinct=False)
        lookup = phone_lookup(phones.raw_phone, region=region, name="ingest_phone_lookup")
        c = c.left_join(lookup, c.raw_phone == lookup.raw_phone).select(c, phone=lookup.phone)
        c = c.mutate(email=normalize_email(c.raw_email, backend=engine))
        c = engine.scratch("ingest_contacts", c)
        for name in ("ingest_phone_lookup", "ingest_phone_lookup_fast", "ingest_phone_lookup_slow"):
            engine.drop(name)  # stored in the contacts now
        counts = c.group_by("source").agg(
            invalid_phone=((c.raw_phone.strip() != "") & c.phone.isnull()).sum(),
            invalid_email=((c.raw_email.strip() != "") & c.email.isnull()).sum(),
        ).to_pyarrow().to_pylist()
        invalid = {r["source"]: {"invalid_phone": int(r["invalid_phone"] or 0),
                                 "invalid_email": int(r["invalid_email"] or 0)} for r in counts}
        contacts = c
        rec = c.select(*rec_schema)
    else:
        rec = None
    if id_parts:
        ids = id_parts[0]
        for p in id_parts[1:]:
            ids = ids.union(p, distinct=True)  # sources sharing a namespace share ids
        if rec is not None:
            ids = ids.anti_join(rec, ["source", "source_customer_id"])
        bare = ids.select("source", "source_customer_id",
                          **{k: ibis.null(v) for k, v in rec_schema.items() if k not in ("source", "source_customer_id")})
        rec = bare if rec is None else rec.union(bare, distinct=False)
    records = engine.scratch("ingest_identity_records", rec.select(*rec_schema))
    return records, contacts, invalid


def _distinct_ids(engine: Engine, src: dict, t: ibis.Table) -> ibis.Table:
    """The distinct customer ids of a source's loaded rows, stored once (records and appearances use it).

    For orders each id also gets its :func:`~crmlib.ingest.customers.order_totals`: the customers table
    is built from them, so the orders are grouped in this same pass instead of read back from Parquet.
    """
    name = f"ids_{src['name']}"

    def store() -> tuple[ibis.Table, ibis.Table]:
        loaded = t.filter((t._status == "loaded") & t.source_customer_id.notnull())
        ids = (order_totals(loaded, "source_customer_id") if src["kind"] == "orders"
               else loaded.select("source_customer_id").distinct())
        return t, engine.scratch(name, ids)  # t is held so that its id stays its own

    return engine.memo(("ingest_ids", name, id(t)), store)[1]


def _keyed(t: ibis.Table, src: dict, id_map: ibis.Table) -> ibis.Table:
    """``t`` with customer_key from the identity map (null when the row has no customer id)."""
    if "source_customer_id" not in t.columns:
        return t.mutate(customer_key=ibis.null("string"))
    m = id_map.select(_ns="source", _sid="source_customer_id", customer_key="customer_key")
    m = m.filter(m._ns == _namespace(src))
    return t.left_join(m, t.source_customer_id == m._sid).drop("_ns", "_sid")


def _cookie_map(decided: dict, params: dict, id_map: ibis.Table) -> ibis.Table | None:
    """anonymous_id -> customer_key: the project's one cookie-stitching rule (ROI and A/B read its result).

    Loaded events/touches rows carrying both a cookie and a customer id vote; the customer_key seen with
    the cookie most often wins, a tie goes to the smallest key (the same answer on every run). Rows
    without a customer_key then take their cookie's key; cookies never seen with one stay anonymous.
    """
    parts = []
    for src in params["sources"]:
        vs, t = decided[src["name"]]
        if src["kind"] in ("events", "touchpoints") and {"anonymous_id", "source_customer_id"} <= set(t.columns):
            loaded = t.filter((t._status == "loaded") & t.anonymous_id.notnull() & t.source_customer_id.notnull())
            k = _keyed(loaded, src, id_map)
            parts.append(k.select("anonymous_id", "customer_key"))
    if not parts:
        return None
    pairs = parts[0]
    for p in parts[1:]:
        pairs = pairs.union(p, distinct=False)
    n = pairs.group_by(["anonymous_id", "customer_key"]).agg(n=pairs.count())
    rank = ibis.row_number().over(group_by=n.anonymous_id, order_by=[ibis.desc(n.n), n.customer_key])
    n = n.mutate(_r=rank)
    return n.filter(n._r == 0).select(_anon="anonymous_id", _stitched="customer_key")


def _comment_terms(engine: Engine, loaded: ibis.Table, name: str) -> ibis.Table:
    """``loaded`` (survey rows) with ``comment_terms``: the words of each distinct comment, computed once.

    Segmentation (jieba) runs in Python, so only the distinct comments leave the engine - at most one per
    survey response, in practice far fewer (a survey is answered by a share of the customers, and
    short comments repeat); the words come back as the scratch relation ``name``. The comment itself
    stays in the engine and never reaches a run table unless ``keep_pii``.
    """
    from crmlib.text import comment_terms

    # bounded by the distinct comment texts of one survey source (<= its loaded responses)
    distinct = engine.to_pandas(loaded.filter(loaded.comment.notnull()).select("comment").distinct())
    terms = pd.DataFrame({"_comment": distinct["comment"].astype(str),
                          "_terms": [comment_terms(c) for c in distinct["comment"]]})
    lookup = engine.scratch(name, terms, schema=ibis.schema({"_comment": "string", "_terms": "array<string>"}))
    joined = loaded.left_join(lookup, loaded.comment == lookup._comment)
    return joined.mutate(comment_terms=joined._terms).drop("_comment", "_terms")


def _fact_rows(engine: Engine, vs: ValidatedSource, t: ibis.Table, params: dict, id_map: ibis.Table,
               stitch: ibis.Table | None, decided: dict) -> ibis.Table:
    src, kind = vs.raw.source, vs.raw.kind
    loaded = t.filter(t._status == "loaded")
    if kind == "order_lines":  # every loaded line has a loaded order (check_line_orders): a left join loses none
        orders = _line_orders(src, params, decided, id_map)
        joined = loaded.left_join(orders, loaded.order_id == orders._oid)
        keyed = joined.mutate(customer_key=joined._customer_key, order_ts=joined._order_ts,
                              refund=joined._refund).drop("_oid", "_customer_key", "_order_ts", "_refund")
    else:
        keyed = _keyed(loaded, src, id_map)
    if kind == "surveys" and "comment" in keyed.columns:
        keyed = _comment_terms(engine, keyed, f"comment_terms_{src['name']}")
    if stitch is not None and "anonymous_id" in keyed.columns:
        keyed = keyed.left_join(stitch, keyed.anonymous_id == stitch._anon)
        keyed = keyed.mutate(customer_key=ibis.coalesce(keyed.customer_key, keyed._stitched)).drop("_anon", "_stitched")
    cols = {}
    for name, typ in FACT_COLUMNS[kind]:
        if name == "source":
            cols[name] = ibis.literal(src["name"])
        else:
            cols[name] = _col(keyed, name, typ)
    # an unmapped column whose header names personal data (收货人, remark, ...) is not kept: tables/ is
    # under the reports folder, which holds no PII unless privacy.keep_pii
    hidden = redacted_columns(vs.raw, bool(params["privacy"]["keep_pii"]))
    extras = [e for e in vs.raw.extras if e not in hidden]
    if kind == "surveys" and "comment" in keyed.columns and params["privacy"]["keep_pii"]:
        extras = [*extras, "comment"]  # free text may name people: only with keep_pii
    extra_map = (ibis.map(ibis.array([ibis.literal(e) for e in extras]),
                          ibis.array([keyed[e].cast("string") for e in extras]))
                 if extras else ibis.null("map<string, string>"))
    return keyed.select(**cols, row_number=keyed._row_number, extras=extra_map)


def _keyed_order_totals(engine: Engine, params: dict, decided: dict, id_map: ibis.Table) -> ibis.Table:
    """Order totals per customer id of every orders source, with customer_key (several rows per key)."""
    parts = []
    for src in params["sources"]:
        vs, t = decided[src["name"]]
        if src["kind"] == "orders":
            k = _keyed(_distinct_ids(engine, src, t), src, id_map)
            parts.append(k.select("customer_key", "first_order_ts", "last_order_ts", "orders", "revenue"))
    return ibis.union(*parts, distinct=False)  # params require an orders source


def _appearances(engine: Engine, decided: dict, params: dict, id_map: ibis.Table) -> tuple[ibis.Table, list[str]]:
    """(customer_key, source name) for every source a person has a loaded row in, and the source names.

    A person with several ids in one source has that pair once per id: ``build_customers`` gets the
    names, so that each source is listed once in ``sources``.
    """
    parts, names = [], []
    for src in params["sources"]:
        vs, t = decided[src["name"]]
        if "source_customer_id" not in t.columns:
            continue
        ids = (_distinct_ids(engine, src, t) if src["kind"] != "contacts"
               else t.filter((t._status == "loaded") & t.source_customer_id.notnull())
               .select("source_customer_id").distinct())
        k = _keyed(ids, src, id_map)
        parts.append(k.filter(k.customer_key.notnull()).select("customer_key", source=ibis.literal(src["name"])))
        names.append(src["name"])
    out = parts[0]
    for p in parts[1:]:
        out = out.union(p)
    return out, names


# -- report helpers (counts only, never people) ---------------------------------------------------------
def _rows_frame(quality: dict) -> pd.DataFrame:
    rows = []
    for name, q in quality["sources"].items():
        rows.append({"source": name, **{k: q[k] for k in ("rows_read", "rows_loaded", "rows_quarantined",
                                                           "duplicates_dropped")},
                     **{f"check:{k}": v for k, v in q["checks"].items()}})
    df = pd.DataFrame(rows).set_index("source")
    check_cols = [c for c in df.columns if c.startswith("check:")]
    df[check_cols] = df[check_cols].fillna(0).astype("int64")
    return df


def rows_by_source(engine: Engine, params: dict | None = None) -> pd.DataFrame:
    """Per source: rows read, loaded, quarantined, duplicates dropped, and one column per check."""
    return _rows_frame(engine.read_json("data_quality"))


def quarantine_reasons(engine: Engine, params: dict | None = None) -> pd.DataFrame:
    """Quarantined rows per (source, reason), most frequent first, with one example row number."""
    q = engine.table("quarantine")
    agg = q.group_by(["source", "reason"]).agg(rows=q.count(), first_row=q.row_number.min())
    return engine.to_pandas(agg.order_by([ibis.desc("rows"), "source", "reason"]))


def identity_links(engine: Engine, params: dict | None = None) -> pd.DataFrame:
    """Identity links by rule (links that merged two clusters) and records per match_rule."""
    links = engine.to_pandas(engine.table("identity_links"))
    m = engine.table("identity_map")
    per_rule = engine.to_pandas(m.group_by("match_rule").agg(records=m.count()))
    return links.merge(per_rule.rename(columns={"match_rule": "rule"}), on="rule", how="outer").fillna(0)


def customer_overview(engine: Engine, params: dict | None = None) -> pd.DataFrame:
    """Headline counts: customers, with orders, in several sources, revenue, and per tag."""
    c = engine.table("customers")
    m = engine.table("identity_map")
    head = c.aggregate(customers=c.count(), with_orders=(c.orders > 0).sum(),
                       in_several_sources=(c.sources.length() > 1).sum(), net_revenue=c.revenue.sum(),
                       orders=c.orders.sum()).to_pyarrow().to_pylist()[0]
    head["source_records"] = int(m.count().execute())
    tags = c.select(tag=c.tags.unnest())
    for r in tags.group_by("tag").agg(n=tags.count()).order_by("tag").to_pyarrow().to_pylist():
        head[f"tag:{r['tag']}"] = int(r["n"])
    return pd.DataFrame({"metric": list(head), "value": list(head.values())})


def monthly_orders_by_channel(engine: Engine, params: dict | None = None) -> pd.DataFrame:
    """Orders (positive amounts) and net revenue per calendar month (local time) and sales channel."""
    o = engine.table("orders")
    month = o.order_ts.truncate("M").date().name("month")
    agg = o.group_by([month, o.channel.fill_null("unknown").name("channel")]).agg(
        orders=(o.amount > 0).sum(), revenue=o.amount.sum())
    return engine.to_pandas(agg.order_by(["month", "channel"]))


# -- page views: what the report shows (they read and format; the stage call wrote every table) --------
def _labelled(df: pd.DataFrame, labels: dict[str, str], kinds: dict[str, str]) -> tuple[pd.DataFrame, dict, list]:
    cols = [c for c in labels if c in df.columns]
    return (df[cols].rename(columns=labels), {labels[c]: k for c, k in kinds.items() if c in cols},
            [labels[c] for c in cols])


def rows_view(engine: Engine, params: dict | None = None, *, run_dir: Any = None) -> Any:
    """Rows read, loaded, quarantined and dropped per source; the per-check counts are in the download."""
    from crmlib.i18n import _
    from crmlib.report import show

    rows = rows_by_source(engine, params).reset_index()
    files = {s["name"]: os.path.basename(str(s["path"])) for s in (params or {}).get("sources", [])}
    rows.insert(1, "file", rows["source"].map(files).fillna(""))
    labels = {"source": _("source"), "file": _("file"), "rows_read": _("rows read"), "rows_loaded": _("loaded"),
              "rows_quarantined": _("quarantined"), "duplicates_dropped": _("duplicates dropped")}
    kinds = {"rows_read": "count", "rows_loaded": "count", "rows_quarantined": "count", "duplicates_dropped": "count"}
    full = rows.rename(columns=labels)
    return show(full, kinds={labels[c]: k for c, k in kinds.items()}, columns=list(labels.values()), max_rows=20,
                caption=_("What happened to every row, per source"), download="rows_by_source" if run_dir else None,
                run_dir=run_dir)


def quarantine_view(engine: Engine, params: dict | None = None, *, run_dir: Any = None) -> Any:
    """Quarantined rows per (source, reason), most frequent first, with the first file row to look at."""
    from crmlib.i18n import _
    from crmlib.report import show

    from crmlib.ingest.findings import reason_fix, reason_words

    reasons = quarantine_reasons(engine, params)
    # the stored reason is English with the fix inside; the page says both in its language, the download
    # keeps the whole reason too
    reasons.insert(2, "problem", [reason_words(r) for r in reasons["reason"]])
    reasons.insert(3, "fix", [reason_fix(r, s) for r, s in zip(reasons["reason"], reasons["source"])])
    frame, kinds, cols = _labelled(reasons, {"source": _("source"), "problem": _("problem"),
                                             "fix": _("what to do"), "rows": _("rows"),
                                             "first_row": _("first at file row"), "reason": _("reason (in full)")},
                                   {"rows": "count", "first_row": "count"})
    return show(frame, kinds=kinds, columns=cols[:-1], max_rows=10, caption=_("Why rows were set aside"),
                download="quarantine_reasons" if run_dir else None, run_dir=run_dir)


def identity_view(engine: Engine, params: dict | None = None, *, run_dir: Any = None) -> Any:
    """Identity links per rule and the source records each rule assigned."""
    from crmlib.i18n import _
    from crmlib.report import show

    frame, kinds, cols = _labelled(identity_links(engine, params),
                                   {"rule": _("rule"), "links": _("links that merged records"),
                                    "records": _("records assigned")},
                                   {"rule": "label", "links": "count", "records": "count"})
    return show(frame, kinds=kinds, columns=cols, caption=_("How records were linked"))


def customer_overview_view(engine: Engine, params: dict | None = None) -> Any:
    """The customer counts as a two-column table (measure, value), revenue as money."""
    from crmlib.i18n import _
    from crmlib.present import fmt_count, fmt_money
    from crmlib.report import show

    overview = customer_overview(engine, params)
    currency = (params or {}).get("run", {}).get("currency")
    names = {"customers": _("customers (people)"), "with_orders": _("customers who bought"),
             "in_several_sources": _("customers in more than one source"), "net_revenue": _("net revenue"),
             "orders": _("orders"), "source_records": _("source records linked")}
    measure = [names.get(m, _("tagged {tag}").format(tag=m.removeprefix("tag:")) if m.startswith("tag:") else m)
               for m in overview["metric"]]
    value = [fmt_money(v, currency) if m == "net_revenue" else fmt_count(v)
             for m, v in zip(overview["metric"], overview["value"])]
    return show(pd.DataFrame({_("measure"): measure, _("value"): value}), caption=_("Customers"), max_rows=30)


def monthly_figure(monthly: pd.DataFrame, value: str = "orders", currency: str | None = None) -> None:
    """Orders or net revenue per month by channel, titled with the channel that brings the most."""
    from crmlib.i18n import _
    from crmlib.ingest.plotting import plot_monthly_orders
    from crmlib.present import fmt_count, fmt_money, fmt_percent
    from crmlib.report import figure

    ax = plot_monthly_orders(monthly, value=value)
    ax.set_title("")  # the figure's title states the takeaway
    if monthly.empty:
        title = _("No orders in this run")
    else:
        by_channel = monthly.groupby("channel")[value].sum().sort_values(ascending=False)
        total = float(by_channel.sum())
        amount = fmt_count(total) if value == "orders" else fmt_money(total, currency)
        title = (_("{channel} brings the most orders: {share} of {total}") if value == "orders"
                 else _("{channel} brings the most revenue: {share} of {total}")).format(
            channel=by_channel.index[0], share=fmt_percent(by_channel.iloc[0] / total if total else float("nan")),
            total=amount)
    caption = (_("Orders with a positive amount per calendar month (local time), stacked by sales channel.")
               if value == "orders" else
               _("Net revenue (refunds subtracted) per calendar month (local time), stacked by sales channel."))
    figure(ax, title=title, caption=caption,
           alt=_("Stacked bar chart per month, one colour per sales channel."))
