"""Simulators of the BG/NBD and Gamma-Gamma generative processes (for tests and benchmarks)."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["simulate_bgnbd", "simulate_gamma_gamma"]


def simulate_bgnbd(
    n_customers: int,
    r: float,
    alpha: float,
    a: float,
    b: float,
    T: float | np.ndarray,
    *,
    seed: int | np.random.Generator | None = 0,
    day_grid: float | None = None,
) -> pd.DataFrame:
    """Draw (frequency, recency, T) from the BG/NBD process.

    Each customer gets lambda ~ Gamma(shape r, rate alpha) and p ~ Beta(a, b). Starting from the first
    purchase at time 0 they buy again after Exp(lambda) waiting times; after every repeat purchase they
    drop out with probability p (the BG/NBD timing: dropout can only happen right after a purchase).
    Purchases after T are not observed.

    Parameters
    ----------
    T : float or array
        Observation length per customer (same unit as 1/alpha).
    day_grid : float, optional
        Length of a day in the time unit (1/7 for weeks). When given, recency and T are floored to whole
        days, like data collected per calendar day (x is kept; same-day repeat purchases are rare).

    Returns
    -------
    DataFrame with ``frequency, recency, T`` and the latent ``lam, p``.
    """
    rng = np.random.default_rng(seed)
    big_t = np.broadcast_to(np.asarray(T, float), (n_customers,)).copy()
    lam = rng.gamma(shape=r, scale=1.0 / alpha, size=n_customers)
    p = rng.beta(a, b, size=n_customers)
    x = np.zeros(n_customers, dtype=np.int64)
    t_x = np.zeros(n_customers)
    clock = np.zeros(n_customers)
    active = np.arange(n_customers)
    while active.size:
        clock[active] += rng.exponential(1.0, size=active.size) / lam[active]
        in_window = clock[active] <= big_t[active]
        active = active[in_window]
        x[active] += 1
        t_x[active] = clock[active]
        survives = rng.random(active.size) >= p[active]
        active = active[survives]
    if day_grid is not None:
        big_t = np.floor(big_t / day_grid + 1e-9) * day_grid
        t_x = np.minimum(np.floor(t_x / day_grid) * day_grid, big_t)
    return pd.DataFrame({"frequency": x, "recency": t_x, "T": big_t, "lam": lam, "p": p})


def simulate_gamma_gamma(
    frequency: np.ndarray,
    p: float,
    q: float,
    v: float,
    *,
    seed: int | np.random.Generator | None = 0,
) -> pd.DataFrame:
    """Draw the mean spend of ``frequency`` transactions from the Gamma-Gamma process.

    nu ~ Gamma(shape q, rate v) per customer; each transaction z ~ Gamma(shape p, rate nu), so the mean
    of x transactions is Gamma(shape p x, rate nu x). Customers with x = 0 get monetary_value 0.
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(frequency, dtype=np.int64)
    nu = rng.gamma(shape=q, scale=1.0 / v, size=x.size)
    shape = np.where(x > 0, p * x, 1.0)
    total = rng.gamma(shape=shape, scale=1.0 / nu)
    mean_spend = np.where(x > 0, total / np.maximum(x, 1), 0.0)
    return pd.DataFrame({"frequency": x, "monetary_value": mean_spend, "nu": nu})
