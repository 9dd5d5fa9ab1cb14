"""The run's analysis date (``run.as_of``), resolved once per run, and the one end-of-day convention.

``run.as_of`` is inclusive: everything up to the end of that day counts. The end of a day is the next
midnight, *exclusive*: ``as_of_end(as_of) = as_of + 1 day at 00:00``, a naive timestamp in the local
time of ``run.timezone`` (the run's tables store timestamps that way, see
:mod:`crmlib.ingest.validate`). Every stage compares ``ts < as_of_end(as_of)``.

When ``run.as_of`` is null the analysis date is the date of the latest order. Ingest resolves it once
and writes ``tables/as_of.json`` (:func:`write_as_of`); later stages read that file
(:func:`resolve_as_of`), so every stage of a run uses the same date, also when a later stage adds
tables.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd

from crmlib.status import CannotCompute

__all__ = ["AS_OF_FILE", "resolve_as_of", "resolve_period_end", "as_of_end", "write_as_of", "read_as_of"]

#: ``tables/as_of.json``: {"as_of", "source", "timezone", "end_exclusive"}.
AS_OF_FILE = "as_of"


def as_of_end(as_of: str | dt.date | pd.Timestamp) -> pd.Timestamp:
    """The exclusive end of the day ``as_of``: the next midnight, naive local time.

    Parameters
    ----------
    as_of : str, date or Timestamp
        A date (a time of day, if any, is ignored: the whole day counts).

    Returns
    -------
    pandas.Timestamp
        ``as_of + 1 day`` at 00:00, without time zone (compare as ``ts < as_of_end(as_of)``).
    """
    ts = pd.Timestamp(as_of)
    if ts.tzinfo is not None:
        raise ValueError(f"as_of must be a local date without time zone, got {as_of!r}")
    return ts.normalize() + pd.Timedelta(days=1)


def _from_params(params: dict) -> dt.date | None:
    as_of = params["run"]["as_of"]
    return None if as_of is None else dt.date.fromisoformat(str(as_of)[:10])


def _latest_order_date(engine) -> dt.date:
    if not engine.has_table("orders"):
        raise CannotCompute("this run has no orders table, so the analysis date cannot be taken from the "
                            "latest order: set run.as_of")
    latest = engine.to_pandas(engine.table("orders").order_ts.max())
    if latest is None or pd.isna(latest):
        raise CannotCompute("this run has no orders, so the analysis date cannot be taken from the latest "
                            "order: set run.as_of")
    return pd.Timestamp(latest).date()


def read_as_of(engine) -> dict | None:
    """The run's ``tables/as_of.json`` written by ingest, or None when there is none."""
    if not (engine.tables_dir / f"{AS_OF_FILE}.json").is_file():
        return None
    return engine.read_json(AS_OF_FILE)


def resolve_as_of(engine, params: dict) -> dt.date:
    """The run's analysis date.

    ``run.as_of`` when set; else the date ingest recorded in ``tables/as_of.json``; else the date of
    the latest order in the run's ``orders`` table.

    Parameters
    ----------
    engine : Engine
        The run's engine.
    params : dict
        Validated params (:func:`crmlib.params.load_params` or :func:`crmlib.params.complete_params`).

    Raises
    ------
    CannotCompute
        When ``run.as_of`` is null and the run has no orders to take the date from.
    """
    from_params = _from_params(params)
    if from_params is not None:
        return from_params
    recorded = read_as_of(engine)
    if recorded and recorded.get("as_of"):
        return dt.date.fromisoformat(recorded["as_of"])
    return _latest_order_date(engine)


def resolve_period_end(engine, params: dict, explicit: str | None) -> str | None:
    """The last day of an analysis period, ISO: ``explicit`` (a stage's ``period_end`` param) when set,
    else the run's analysis date (:func:`resolve_as_of`), else None when the run has neither a
    ``run.as_of`` nor orders (the stage then reports the missing input)."""
    if explicit is not None:
        return explicit
    try:
        return resolve_as_of(engine, params).isoformat()
    except CannotCompute:
        return None


def write_as_of(engine, params: dict) -> dict:
    """Resolve the analysis date from params or the orders just loaded; write ``tables/as_of.json``.

    Called once, at the end of ingest. A file left by an earlier ingest in the same run directory is
    not consulted: it is replaced.

    Returns
    -------
    dict
        ``{"as_of": "YYYY-MM-DD", "source": "params" | "latest order", "timezone": run.timezone,
        "end_exclusive": "YYYY-MM-DDT00:00:00"}``; with no ``run.as_of`` and no orders, ``as_of`` and
        ``end_exclusive`` are null, ``source`` is ``"none"`` and ``reason`` says why.
    """
    as_of, source, reason = _from_params(params), "params", None
    if as_of is None:
        try:
            as_of, source = _latest_order_date(engine), "latest order"
        except CannotCompute as exc:
            source, reason = "none", str(exc)
    record: dict[str, Any] = {
        "as_of": None if as_of is None else as_of.isoformat(),
        "source": source,
        "timezone": params["run"]["timezone"],
        "end_exclusive": None if as_of is None else as_of_end(as_of).isoformat(),
    }
    if reason:
        record["reason"] = reason
    engine.write_json(AS_OF_FILE, record)
    return record
