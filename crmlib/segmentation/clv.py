"""Per-customer CLV from a fitted BG/NBD and Gamma-Gamma model.

Discount convention (periodic, end of period): the horizon of H time units is cut into periods of one
time unit (the last one shorter when H is not whole). The expected repeat purchases in period k,
``E[Y(t_k)] - E[Y(t_{k-1})]`` (BG/NBD conditional expectation from the calibration end), are valued at
the Gamma-Gamma expected average order value and discounted to the calibration end as if paid at the
period's end: factor ``(1 + annual_rate) ** (-t_k * days_per_unit / 365.25)``, i.e. the annual rate
compounded to the period length. This is lifetimes' discrete ``customer_lifetime_value`` approach with
an annual rather than per-period rate. CLV is revenue (no margin) unless ``margin`` < 1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crmlib.params import schema_default
from crmlib.segmentation.summary import time_unit_days

__all__ = ["customer_lifetime_value", "DISCOUNT_CONVENTION", "ONE_YEAR"]

#: One year in each time unit: what a null ``segmentation.clv.horizon`` means (see docs/PARAMS.md).
ONE_YEAR = {"D": 365.0, "W": 52.0, "M": 12.0}

DISCOUNT_CONVENTION = (
    "periodic: expected repeat purchases per time unit x expected average order value, discounted at the "
    "end of each period by (1 + annual rate)^(-years elapsed)"
)


def customer_lifetime_value(
    bgnbd,
    gamma_gamma,
    frequency,
    recency,
    T,
    monetary_value,
    *,
    horizon: float | None = schema_default("segmentation.clv.horizon"),
    time_unit: str = schema_default("segmentation.clv.time_unit"),
    discount_rate: float = schema_default("segmentation.clv.discount_rate"),
    margin: float = schema_default("segmentation.clv.margin"),
) -> pd.DataFrame:
    """Discounted expected value of each customer's repeat purchases over ``horizon`` time units.

    Returns
    -------
    DataFrame with ``p_alive, expected_purchases, expected_avg_value, clv`` (one row per input row).
    ``expected_purchases`` is undiscounted over the horizon. Without a spend model (``gamma_gamma`` None:
    it could not be fitted) ``expected_avg_value`` and ``clv`` are null and the purchase columns stand.
    """
    x = np.asarray(frequency, float)
    t_x = np.asarray(recency, float)
    big_t = np.asarray(T, float)
    m = np.asarray(monetary_value, float)
    # hyp2f1 per period is the costly part, and it depends on (x, T) only: the periods are summed once per
    # distinct (x, T), and P(alive) (which adds t_x) multiplies the sums per customer
    codes, uniques = pd.MultiIndex.from_arrays([x, big_t]).factorize()
    ux = uniques.get_level_values(0).to_numpy(float)
    uT = uniques.get_level_values(1).to_numpy(float)

    days = time_unit_days(time_unit)
    horizon = ONE_YEAR[time_unit] if horizon is None else float(horizon)
    edges = np.arange(1.0, np.floor(horizon) + 1.0)
    if horizon > np.floor(horizon) + 1e-12 or edges.size == 0:
        edges = np.append(edges, float(horizon))
    value_u = np.zeros(ux.size)
    previous = np.zeros(ux.size)
    for t_k in edges:
        cumulative = bgnbd.conditional_expected_number_of_purchases_if_alive(t_k, ux, uT)
        discount = (1.0 + discount_rate) ** (-(t_k * days / 365.25))
        value_u += (cumulative - previous) * discount
        previous = cumulative
    p_alive = bgnbd.conditional_probability_alive(x, t_x, big_t)
    aov = np.full(x.shape, np.nan) if gamma_gamma is None else gamma_gamma.conditional_expected_average_profit(x, m)
    return pd.DataFrame(
        {
            "p_alive": p_alive,
            "expected_purchases": previous[codes] * p_alive,
            "expected_avg_value": aov,
            "clv": margin * aov * (value_u[codes] * p_alive),
        }
    )
