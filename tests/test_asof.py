"""The run's analysis date: resolved once (params, else the latest order), recorded, one end-of-day rule."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from crmlib.asof import as_of_end, read_as_of, resolve_as_of, resolve_period_end, write_as_of
from crmlib.engine import Engine
from crmlib.params import complete_params
from crmlib.status import CannotCompute


@pytest.fixture
def engine(tmp_path):
    eng = Engine(tmp_path / "run")
    yield eng
    eng.close()


def _orders(*stamps: str) -> pd.DataFrame:
    return pd.DataFrame({"customer_key": "k", "order_ts": pd.to_datetime(list(stamps)), "amount": 1.0})


@pytest.mark.parametrize("value", ["2026-06-30", dt.date(2026, 6, 30), pd.Timestamp("2026-06-30 17:45")])
def test_end_of_day_is_the_next_midnight_exclusive(value):
    end = as_of_end(value)
    assert end == pd.Timestamp("2026-07-01 00:00:00") and end.tzinfo is None
    assert pd.Timestamp("2026-06-30 23:59:59.999999") < end <= pd.Timestamp("2026-07-01 00:00:00")


def test_end_of_day_refuses_an_aware_time():
    with pytest.raises(ValueError, match="without time zone"):
        as_of_end(pd.Timestamp("2026-06-30", tz="Asia/Shanghai"))


def test_params_as_of_wins(engine):
    engine.write_table("orders", _orders("2026-08-01 10:00"))
    assert resolve_as_of(engine, complete_params({"run": {"as_of": "2026-06-30"}})) == dt.date(2026, 6, 30)


def test_latest_order_date_is_recorded_once_and_then_read(engine):
    params = complete_params({"run": {"timezone": "Europe/Berlin"}})
    engine.write_table("orders", _orders("2026-05-01 08:00", "2026-05-03 23:30"))
    record = write_as_of(engine, params)
    assert record == {"as_of": "2026-05-03", "source": "latest order", "timezone": "Europe/Berlin",
                      "end_exclusive": "2026-05-04T00:00:00"}
    assert json.loads((engine.tables_dir / "as_of.json").read_text(encoding="utf-8")) == record
    assert read_as_of(engine) == record
    # a later change to the orders table does not move the run's date: it was resolved once
    engine.write_table("orders", _orders("2026-05-03 23:30", "2026-05-09 12:00"))
    assert resolve_as_of(engine, params) == dt.date(2026, 5, 3)


def test_write_replaces_an_earlier_record(engine):
    engine.write_table("orders", _orders("2026-05-03 23:30"))
    write_as_of(engine, complete_params())
    engine.write_table("orders", _orders("2026-05-09 12:00"))
    assert write_as_of(engine, complete_params())["as_of"] == "2026-05-09"
    assert write_as_of(engine, complete_params({"run": {"as_of": "2026-05-05"}}))["source"] == "params"
    assert read_as_of(engine)["end_exclusive"] == "2026-05-06T00:00:00"


def test_no_orders_and_no_as_of(engine):
    with pytest.raises(CannotCompute, match="set run.as_of"):
        resolve_as_of(engine, complete_params())
    record = write_as_of(engine, complete_params())
    assert record["as_of"] is None and record["source"] == "none" and "run.as_of" in record["reason"]
    engine.write_table("orders", _orders())
    with pytest.raises(CannotCompute, match="no orders"):
        resolve_as_of(engine, complete_params())


def test_every_stage_uses_the_same_end_of_day():
    """Ingest's future cutoff, ROI's period end and A/B's window end all end the day at the next midnight."""
    from crmlib.abtest.metrics import _as_of_end as ab_end
    from crmlib.ingest.stage import analysis_end
    from crmlib.roi.journeys import _to_ts as roi_ts

    day = "2026-06-30"
    expected = as_of_end(day)
    assert pd.Timestamp(analysis_end(complete_params({"run": {"as_of": day}}))) == expected
    assert pd.Timestamp(roi_ts(day, end=True)) == expected
    assert pd.Timestamp(ab_end(day)) == expected
    # with a holdout, ingest's cutoff is the end of the holdout's last day
    later = complete_params({"run": {"as_of": day}, "segmentation": {"clv": {"holdout_end": "2026-09-30"}}})
    assert pd.Timestamp(analysis_end(later)) == as_of_end("2026-09-30")


def test_segmentation_counts_orders_up_to_the_end_of_as_of(engine):
    """An order at 23:59 on as_of is in the RFM data; one at 00:00 the next day is not."""
    from crmlib.segmentation import stage

    engine.write_table("orders", pd.DataFrame({
        "customer_key": ["a", "b", "c"],
        "order_ts": pd.to_datetime(["2026-06-01 10:00:00", "2026-06-30 23:59:59", "2026-07-01 00:00:00"]),
        "amount": [10.0, 20.0, 30.0]}))
    params = complete_params({"run": {"as_of": "2026-06-30"}})
    rfm = stage.rfm_stage(engine, params)
    assert set(rfm["customer_key"]) == {"a", "b"}


def test_period_end_is_the_param_else_the_as_of_date_else_none(engine):
    params = complete_params()
    assert resolve_period_end(engine, params, None) is None  # no run.as_of and no orders: nothing to end on
    assert resolve_period_end(engine, params, "2026-03-31") == "2026-03-31"
    engine.write_table("orders", _orders("2026-05-02 10:00", "2026-05-09 23:59"))
    assert resolve_period_end(engine, params, None) == "2026-05-09"
    assert resolve_period_end(engine, params, "2026-03-31") == "2026-03-31"
