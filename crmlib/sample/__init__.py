"""Sample-data generator (`crm sample`): a dirty multi-source CRM dataset with ground truth."""

from __future__ import annotations

from .generator import AS_OF, SOURCE_FILES, STORE_CARD_COLUMNS, SampleSummary, generate_sample
from .order_lines import ORDER_LINES_FILE

__all__ = ["AS_OF", "ORDER_LINES_FILE", "SOURCE_FILES", "STORE_CARD_COLUMNS", "SampleSummary", "generate_sample"]
