"""Shared fixtures: the CDNOW sample (tests/data/cdnow, copied from lifetimes 0.11.3, MIT) as orders."""

from __future__ import annotations

from pathlib import Path

import ibis
import pandas as pd
import pytest

from crmlib.segmentation.summary import repeat_purchase_summary

CDNOW_FILE = Path(__file__).resolve().parents[1] / "data" / "cdnow" / "CDNOW_sample.txt"
CALIBRATION_END = "1997-09-30"
HOLDOUT_END = "1998-06-30"


def read_cdnow() -> pd.DataFrame:
    raw = pd.read_csv(
        CDNOW_FILE,
        sep=r"\s+",
        header=None,
        names=["master_id", "customer_id", "date", "cds", "amount"],
        dtype={"date": str},
    )
    return pd.DataFrame(
        {
            "customer_key": raw["customer_id"].astype(str),
            "order_ts": pd.to_datetime(raw["date"], format="%Y%m%d"),
            "amount": raw["amount"].astype(float),
        }
    )


@pytest.fixture(scope="session")
def cdnow_orders() -> pd.DataFrame:
    return read_cdnow()


@pytest.fixture(scope="session")
def cdnow_summary(cdnow_orders) -> pd.DataFrame:
    """Weekly calibration summary to 1997-09-30 (inclusive) with the holdout to 1998-06-30, via Ibis/DuckDB."""
    con = ibis.duckdb.connect()
    orders = con.create_table("orders", cdnow_orders)
    expr = repeat_purchase_summary(orders, CALIBRATION_END, time_unit="W", holdout_end=HOLDOUT_END)
    return expr.to_pandas()


@pytest.fixture
def zh_cn():
    """Report text in Simplified Chinese for one test; English again afterwards (other tests assert English)."""
    from crmlib import i18n

    i18n.set_language("zh-CN")
    yield
    i18n.set_language("en")
