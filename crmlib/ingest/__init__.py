"""Stage 1, ingest: read every source, validate and deduplicate, resolve identities, write the tables.

See :mod:`crmlib.ingest.stage` for the notebook-facing functions.
"""

from crmlib.ingest.errors import IngestError
from crmlib.ingest.preflight import check_sources
from crmlib.ingest.stage import (
    IngestSummary,
    customer_overview,
    identity_links,
    ingest,
    monthly_orders_by_channel,
    quarantine_reasons,
    rows_by_source,
    run_ingest,
)

__all__ = ["IngestError", "check_sources", "IngestSummary", "run_ingest", "ingest", "rows_by_source", "quarantine_reasons",
           "identity_links", "customer_overview", "monthly_orders_by_channel", "plot_monthly_orders"]


def __getattr__(name: str):
    if name == "plot_monthly_orders":  # matplotlib only when a figure is wanted
        from crmlib.ingest.plotting import plot_monthly_orders
        return plot_monthly_orders
    raise AttributeError(name)
