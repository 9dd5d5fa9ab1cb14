"""Budget reallocation on the media-mix model's response curves.

Problem
-------
Weekly spend ``s_c`` per channel. Current spend ``m_c`` = the channel's mean weekly spend over the
modelled weeks. Maximise the predicted steady-state weekly revenue ``sum_c f_c(s_c)``
(``f_c(s) = beta_c hill(s / (1 - decay_c))``, see :mod:`crmlib.roi.mmm`) subject to
``sum_c s_c = sum_c m_c`` (same total budget) and ``(1 - b) m_c <= s_c <= (1 + b) m_c``
(default ``b = 0.3``). Channels the MMM did not identify keep their current spend (they are neither
a source nor a destination of money). Solved with scipy's SLSQP from the current allocation; the
result is clipped to the bounds and the total restored exactly, so bounds are never exceeded. With
Hill shape 1 every ``f_c`` is concave and the optimum is global; an S-shaped channel (shape 2) is
concave above ``half_sat / sqrt(3)`` of adstocked spend, where channels usually run, and the result is
never worse than the current allocation (checked).

The expected gain is ``sum f(new) - sum f(current)`` per week at the point estimates; its interval
re-evaluates the *same* proposed allocation on every bootstrap draw's curves (percentiles).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from crmlib.i18n import N_, _
from crmlib.params import schema_default
from crmlib.roi.mmm import MediaMixModel
from crmlib.status import CannotCompute

__all__ = ["BudgetResult", "reallocate_budget", "CAVEATS", "NOTHING_MOVES", "METHODS"]

# caveats and method lines are stored in English (``roi_budget_summary.json``); the page shows their
# translation (:func:`crmlib.roi.messages.recorded_text`)
CAVEATS = (
    N_("The gain is what the media-mix model predicts, not a measured result: it assumes the fitted "
       "response curves hold outside the spend levels seen in the data, which is why moves are limited "
       "to the bounds."),
    N_("Channels the data could not pin down keep their current budget; their true return may be higher "
       "or lower."),
    N_("Curves are steady-state weekly effects; carry-over means a change takes a few weeks to show."),
    N_("Seasonality, competitors and creative changes can move the curves; re-fit before acting again."),
)
#: the caveat that leads when fewer than two channels are identified
NOTHING_MOVES = N_("Nothing moves: the data pinned down {identified} of {modelled} modelled channels, and moving "
                   "budget needs at least two. A holdout or geo experiment on the largest channel would measure "
                   "what this data cannot.")
#: how the allocation was found (``{message}``: the optimiser's own words)
METHODS = {
    "unchanged": N_("no identified channel: allocation unchanged"),
    "slsqp": N_("SLSQP ({message}), clipped to bounds, total restored"),
}


@dataclass
class BudgetResult:
    """Proposed weekly allocation and the predicted gain.

    Attributes
    ----------
    table : pandas.DataFrame
        Per channel: ``current, proposed, change, change_pct, lower, upper, identified,
        current_response, proposed_response`` (weekly spend and weekly revenue).
    gain, gain_low, gain_high : float
        Predicted change in weekly revenue and its bootstrap interval.
    total_budget : float
        Weekly budget (unchanged by the reallocation).
    ci_level : float
    method : str
    caveats : tuple of str
    """

    table: pd.DataFrame
    gain: float
    gain_low: float
    gain_high: float
    total_budget: float
    ci_level: float
    method: str
    caveats: tuple[str, ...] = field(default=CAVEATS)

    def __repr__(self) -> str:
        return (
            f"<BudgetResult: weekly budget {self.total_budget:,.0f}, predicted gain {self.gain:,.0f}/week "
            f"({self.ci_level:.0%} interval {self.gain_low:,.0f} to {self.gain_high:,.0f})>"
        )


def _curve(mmm: MediaMixModel, channel: str) -> tuple[float, float, float, float]:
    p = mmm.params_.loc[channel]
    return float(p["beta"]), float(p["decay"]), float(p["half_sat_spend"]), float(p["shape"])


def reallocate_budget(mmm: MediaMixModel, *, bounds: float = schema_default("roi.budget_bounds")) -> BudgetResult:
    """Redistribute the same weekly budget within ``+/- bounds`` of current spend (module docstring)."""
    if not 0 <= bounds < 1:
        raise ValueError("bounds must be in [0, 1)")
    all_rows = mmm.summary_.set_index("channel")
    summary = all_rows.loc[list(mmm.channels_)]
    channels = list(summary.index)
    if not channels:
        raise CannotCompute(_("the media-mix model has no modelled channel with spend, so there is no budget to "
                              "move."))
    current = summary["mean_weekly_spend"].to_numpy(float)
    identified = summary["identified"].to_numpy(bool)
    lower = np.where(identified, (1 - bounds) * current, current)
    upper = np.where(identified, (1 + bounds) * current, current)
    total = float(current.sum())
    curves = [_curve(mmm, c) for c in channels]

    def response(s: np.ndarray) -> np.ndarray:
        beta, decay, half, shape = (np.array(v, dtype=float) for v in zip(*curves))
        return beta * _hill_vec(np.asarray(s, dtype=float) / (1 - decay), half, shape)

    def neg_total(s: np.ndarray) -> float:
        return -float(response(s).sum())

    def neg_grad(s: np.ndarray) -> np.ndarray:
        return -np.array([mmm._mroas(d, k, b, x, sh) for x, (b, d, k, sh) in zip(s, curves)])

    free = identified & (upper > lower)
    proposed = current.copy()
    method = METHODS["unchanged"]
    if free.sum() >= 2:
        res = minimize(
            neg_total,
            current,
            jac=neg_grad,
            method="SLSQP",
            bounds=list(zip(lower, upper)),
            constraints=[{"type": "eq", "fun": lambda s: s.sum() - total, "jac": lambda s: np.ones_like(s)}],
            options={"ftol": 1e-12, "maxiter": 500},
        )
        proposed = _repair(res.x, lower, upper, total)
        if neg_total(proposed) > neg_total(current):  # never propose something worse than today
            proposed = current.copy()
        method = METHODS["slsqp"].format(message=res.message.strip())
    cur_resp, new_resp = response(current), response(proposed)
    gains = []
    for draw, d in mmm.draws_.groupby("draw"):
        d = d.set_index("channel").loc[channels]
        beta, decay, half, shape = (d[c].to_numpy(float) for c in ("beta", "decay", "half_sat_spend", "shape"))
        draw_gain = beta * _hill_vec(proposed / (1 - decay), half, shape)
        draw_base = beta * _hill_vec(current / (1 - decay), half, shape)
        gains.append(float(draw_gain.sum() - draw_base.sum()))
    alpha = (1 - mmm.ci_level) / 2
    low, high = (np.quantile(gains, [alpha, 1 - alpha]) if gains else (np.nan, np.nan))
    table = pd.DataFrame(
        {
            "channel": channels,
            "current": current,
            "proposed": proposed,
            "change": proposed - current,
            "change_pct": np.divide(proposed - current, current, out=np.zeros_like(current), where=current > 0),
            "lower": lower,
            "upper": upper,
            "identified": identified,
            "current_response": cur_resp,
            "proposed_response": new_resp,
        }
    )
    unmodelled = all_rows.drop(index=channels)
    if len(unmodelled):
        fixed = unmodelled["mean_weekly_spend"].to_numpy(float)
        table = pd.concat([table, pd.DataFrame({
            "channel": unmodelled.index, "current": fixed, "proposed": fixed, "change": 0.0, "change_pct": 0.0,
            "lower": fixed, "upper": fixed, "identified": False,
            "current_response": np.nan, "proposed_response": np.nan})], ignore_index=True)
        total += float(fixed.sum())
    # an unidentified channel's curve is not a number anyone should read
    table.loc[~table["identified"], ["current_response", "proposed_response"]] = np.nan
    caveats = CAVEATS
    if identified.sum() < 2:
        caveats = (NOTHING_MOVES.format(identified=int(identified.sum()), modelled=len(channels)),) + CAVEATS
    return BudgetResult(
        table=table,
        gain=float(new_resp.sum() - cur_resp.sum()),
        gain_low=float(low),
        gain_high=float(high),
        total_budget=total,
        ci_level=mmm.ci_level,
        method=method,
        caveats=caveats,
    )


def _hill_vec(a: np.ndarray, half_sat: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """Element-wise Hill with a half-saturation point and a shape per channel."""
    r = (np.maximum(a, 0.0) / half_sat) ** shape
    return r / (1.0 + r)


def _repair(s: np.ndarray, lower: np.ndarray, upper: np.ndarray, total: float) -> np.ndarray:
    """Clip to the bounds, then spread any gap to the total over channels that still have room."""
    s = np.clip(s, lower, upper)
    for _attempt in range(len(s) + 1):
        gap = total - s.sum()
        if abs(gap) <= 1e-9 * max(total, 1.0):
            break
        room = (upper - s) if gap > 0 else (s - lower)
        if room.sum() <= 0:
            break
        s = np.clip(s + np.sign(gap) * room * min(1.0, abs(gap) / room.sum()), lower, upper)
    return s
