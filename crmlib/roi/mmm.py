"""A small, deterministic media-mix model on weekly totals (statsmodels OLS).

Model
-----
For week ``t`` and channel ``c`` with spend ``x_ct``:

* geometric adstock ``a_ct = x_ct + decay_c * a_c,t-1`` (carry-over, ``0 <= decay < 1``), started in
  steady state at the mean spend of the first ``warm_start_weeks`` (a zero start makes every adstock
  ramp up over the first weeks, which a regression matches to any early growth in revenue);
* Hill saturation ``h_ct = a_ct**s / (a_ct**s + K_c**s)`` with ``K_c = half_sat_c * mean_t(a_ct)``
  (``half_sat`` is a multiple of the channel's mean adstocked spend, so grids are scale-free) and shape
  ``s`` (1: concave; 2: S-shaped);
* ``revenue_t = b0 + b1 t + sum_j g_j max(0, t - knot_j) + sum_k (s_k sin(2 pi k t / 52.18) + c_k cos(...))
  + sum_c beta_c h_ct + e_t``, fitted by OLS (statsmodels). ``t`` is in weeks; the knots every
  ``trend_knot_weeks`` (26) let the baseline of a growing customer base bend, slowly enough that it
  cannot follow media flights.
* the half-saturation grid starts at half the mean adstocked spend: a channel saturated far below its
  usual spend has a nearly constant feature, whose coefficient trades off against the intercept and
  yields arbitrary ROAS.

``(decay_c, half_sat_c, s_c)`` are chosen by a profile search: coordinate-wise over channels, each step
the grid point minimising the residual sum of squares with the other channels fixed, repeated until no
channel changes (at most ``max_rounds``).

Outputs (per channel)
---------------------
* ``roas`` = in-sample contribution / spend = ``beta_c * sum_t h_ct / sum_t x_ct`` (carry-over past the
  last week is not counted);
* ``mroas`` = marginal ROAS at the current mean weekly spend ``m_c`` in steady state:
  ``d/dm [beta_c * hill(m / (1 - decay_c))]`` - the revenue of one more unit of weekly spend sustained;
* intervals from a moving-block bootstrap of the OLS residuals (blocks of ``block_weeks``; ``y* =
  fitted + resampled residual blocks``), re-running one round of the profile search per draw so the
  interval also reflects the choice of transform parameters; percentile intervals at ``ci_level``.
* the reported interval is the union of that bootstrap interval and the *profile set*: the ROAS at every
  ``(decay, half_sat, shape)`` grid point of the channel whose residual sum of squares is within
  ``s^2 chi2_3(ci_level)`` of the best (other channels fixed). This widens the interval when the data
  cannot tell a saturated always-on channel's effect from the baseline.
* **identified**: ``roas_low > 0`` and ``roas_high - roas_low <= max_relative_width * roas`` (default
  0.5: the interval excludes zero and is no wider than about +/-25 % of the estimate). Otherwise the data cannot pin the channel down: ``roas`` and
  ``mroas`` are reported as null (the interval is still shown) and the budget step keeps its spend.
* response curves: steady-state weekly revenue ``beta_c * hill(spend / (1 - decay_c))`` against
  weekly spend, with bootstrap bands.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

import ibis
import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats
from scipy.signal import lfilter

from crmlib.i18n import N_, _
from crmlib.params import schema_default
from crmlib.roi.journeys import _to_ts
from crmlib.status import CannotCompute

__all__ = ["MediaMixModel", "geometric_adstock", "hill", "weekly_totals", "fourier_terms", "REASONS", "CONVENTION"]

WEEKS_PER_YEAR = 52.1775

#: why a channel is or is not identified, stored in English in ``summary_["reason"]`` (``mmm.parquet``, which
#: other pages read); the ROI page shows the translation (:func:`crmlib.roi.messages.recorded_text`)
REASONS = {
    "identified": N_("identified"),
    "negative": N_("interval below 0 (a negative effect: the model does not fit this channel)"),
    "includes_zero": N_("interval includes 0"),
    "wide": N_("interval wider than {width} x ROAS"),
    "not_modelled": N_("not modelled: {why}"),
    "no_spend": N_("no spend"),
    "flat": N_("spend does not vary from week to week"),
    "small": N_("spend share below {share}"),
}
#: the model's one-line convention (``summary_.attrs["convention"]``, ``mmm.parquet`` column ``method``)
CONVENTION = N_("ROAS = in-sample contribution / spend; mROAS = steady-state marginal at mean weekly spend; "
                "{level} moving-block ({weeks}-week) residual bootstrap, {draws} draws, seed {seed}, united with "
                "the profile set; identified = low > 0 and (high - low) <= {width} x ROAS")


def geometric_adstock(x: np.ndarray, decay: float, *, warm_start: int = 0) -> np.ndarray:
    """``a_t = x_t + decay * a_{t-1}``.

    ``a_{-1} = 0`` by default. With ``warm_start = k > 0`` the spend before the data is taken to have
    run at the mean of the first ``k`` periods, i.e. ``a_{-1} = mean(x[:k]) / (1 - decay)``
    (steady state). Without it the adstock of a long-running channel *ramps up* over the first weeks of
    any data window, an artefact that a regression happily matches to any early trend in revenue.
    """
    if not 0 <= decay < 1:
        raise ValueError("decay must be in [0, 1)")
    x = np.asarray(x, dtype=float)
    if warm_start > 0 and len(x) and decay > 0:
        prior = x[:warm_start].mean() / (1.0 - decay)
        return lfilter([1.0], [1.0, -decay], x, zi=[decay * prior])[0]
    return lfilter([1.0], [1.0, -decay], x)


def hill(a: np.ndarray, half_sat: float, shape: float = 1.0) -> np.ndarray:
    """Hill saturation ``a**s / (a**s + half_sat**s)`` (0 at 0, 1/2 at ``half_sat``, to 1)."""
    a = np.maximum(np.asarray(a, dtype=float), 0.0)
    if half_sat <= 0:
        raise ValueError("half_sat must be positive")
    r = (a / half_sat) ** shape
    return r / (1.0 + r)


def fourier_terms(n: int, order: int, period: float = WEEKS_PER_YEAR) -> np.ndarray:
    """``n x 2*order`` matrix of sin/cos seasonality terms for weeks ``0..n-1``."""
    t = np.arange(n)
    cols = []
    for k in range(1, order + 1):
        cols += [np.sin(2 * np.pi * k * t / period), np.cos(2 * np.pi * k * t / period)]
    return np.column_stack(cols) if cols else np.empty((n, 0))


def weekly_totals(
    orders: ibis.Table,
    spend: ibis.Table | None = None,
    touchpoints: ibis.Table | None = None,
    *,
    period_start: str | date | datetime | None = None,
    period_end: str | date | datetime | None = None,
    touch_cost: str = "fallback",
    complete_weeks_only: bool = True,
) -> pd.DataFrame:
    """Weekly revenue and spend per channel, computed in the engine.

    With ``complete_weeks_only`` (default) weeks not entirely inside the period (or, without period
    bounds, inside the span of order dates) are dropped.

    Weeks start on Monday. ``revenue`` = sum of positive order amounts (gross sales, the same
    definition as the conversion value). Spend per channel = spend-table cost; touch-level cost is
    used for channels without spend rows (``touch_cost="fallback"``, as in
    :func:`crmlib.roi.roi_table.channel_costs`) or added (``"add"``).
    Weeks without data are filled with zeros. Returns ``week, revenue, <channel>...``.
    """
    start, end_excl = _to_ts(period_start), _to_ts(period_end, end=True)

    def in_period(t, ts):
        if start is not None:
            t = t.filter(ts(t) >= start)
        if end_excl is not None:
            t = t.filter(ts(t) < end_excl)
        return t

    o = in_period(orders.filter(orders.amount > 0), lambda t: t.order_ts.cast("timestamp"))
    rev = o.group_by(week=o.order_ts.cast("timestamp").truncate("W")).agg(revenue=o.amount.cast("float64").sum())
    rev = rev.to_pandas()
    frames = []
    spend_channels: set[str] = set()
    if spend is not None:
        s = in_period(spend, lambda t: t.date.cast("timestamp"))
        s = s.mutate(week=s.date.cast("timestamp").truncate("W"), ch=s.channel.cast("string"))
        by_week = s.group_by(["week", "ch"]).agg(cost=s.cost.cast("float64").sum()).to_pandas()
        spend_channels = set(by_week["ch"])
        frames.append(by_week)
    if touchpoints is not None and "cost" in touchpoints.columns:
        t = in_period(touchpoints.filter(touchpoints.cost.notnull()), lambda t: t.touch_ts.cast("timestamp"))
        t = t.mutate(week=t.touch_ts.cast("timestamp").truncate("W"), ch=t.channel.cast("string"))
        by_week = t.group_by(["week", "ch"]).agg(cost=t.cost.cast("float64").sum()).to_pandas()
        if touch_cost == "fallback":
            by_week = by_week[~by_week["ch"].isin(spend_channels)]
        frames.append(by_week)
    costs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["week", "ch", "cost"])
    wide = costs.pivot_table(index="week", columns="ch", values="cost", aggfunc="sum") if len(costs) else None
    weeks = pd.to_datetime(pd.concat([rev["week"], costs["week"]]))
    if weeks.empty:
        return pd.DataFrame(columns=["week", "revenue"])
    index = pd.date_range(weeks.min(), weeks.max(), freq="7D", name="week")
    out = pd.DataFrame(index=index)
    out["revenue"] = rev.set_index(pd.to_datetime(rev["week"]))["revenue"].reindex(index).fillna(0.0) if len(rev) else 0.0
    if wide is not None:
        wide.index = pd.to_datetime(wide.index)
        out = out.join(wide.reindex(index).fillna(0.0))
    out.columns.name = None
    out = out.reset_index()
    if complete_weeks_only:
        # a partial first or last week would look like a revenue collapse to the regression
        ts = o.order_ts.cast("timestamp")
        span = o.aggregate(first=ts.min(), last=ts.max()).to_pandas().iloc[0]
        if start is not None:
            first_day = pd.Timestamp(start)
        else:
            first_day = pd.Timestamp(span["first"]).normalize()
        if end_excl is not None:
            last_day = pd.Timestamp(end_excl) - pd.Timedelta(days=1)
        else:
            last_day = pd.Timestamp(span["last"]).normalize()
        keep = (out["week"] >= first_day.normalize()) & (out["week"] + pd.Timedelta(days=6) <= last_day)
        out = out[keep].reset_index(drop=True)
    return out


def _sse_adding_each(others: np.ndarray, candidates: np.ndarray, y: np.ndarray, *, with_beta: bool = False):
    """Residual sum of squares of ``y ~ others + candidates[g]`` for every row ``g`` at once.

    Frisch-Waugh-Lovell: project ``others`` out of ``y`` and of each candidate once (one QR), then each
    fit is a single-regressor fit on the residuals: ``sse_g = |r_y|^2 - (r_g . r_y)^2 / |r_g|^2`` and
    ``beta_g = (r_g . r_y) / |r_g|^2``. The same numbers as one least-squares fit per candidate, 72
    candidates for the price of one.
    """
    q, _ = np.linalg.qr(others)
    r_y = y - q @ (q.T @ y)
    r_c = candidates - (candidates @ q) @ q.T
    num = r_c @ r_y
    den = np.einsum("gn,gn->g", r_c, r_c)
    # a candidate inside the span of ``others`` explains nothing more (and gets no coefficient)
    ok = den > 1e-12 * np.maximum(np.einsum("gn,gn->g", candidates, candidates), 1e-300)
    gain = np.where(ok, num**2 / np.where(ok, den, 1.0), 0.0)
    sse = r_y @ r_y - gain
    if with_beta:
        return sse, np.where(ok, num / np.where(ok, den, 1.0), 0.0)
    return sse


class MediaMixModel:
    """Adstock + Hill media-mix model with profile-searched transforms and block-bootstrap intervals.

    Parameters
    ----------
    decay_grid : sequence of float
        Candidate adstock decays per channel.
    half_sat_grid : sequence of float
        Candidate half-saturation points, as multiples of the channel's mean adstocked spend.
    shape_grid : sequence of float, default (1.0, 2.0)
        Candidate Hill shapes: 1 is concave from the first unit of spend (search, affiliate); 2 is
        S-shaped, with a threshold below which spend barely works (awareness media). Fixing the shape
        at 1 when the truth is S-shaped overstates ROAS by 30-80 % (measured on the sample generator).
    fourier_order : int, default 2
        Yearly Fourier pairs.
    trend : bool, default True
        Linear trend in weeks.
    trend_knot_weeks : int or None, default 26
        With ``trend``, the trend is piecewise linear with a knot every this many weeks (hinge terms
        ``max(0, t - knot)``), so a customer base that grows and then levels off is baseline, not
        media. Media effects move with flights of a few weeks; the knots are far enough apart that
        the trend cannot follow them. ``None``: one straight line.
    n_bootstrap : int, default 200
    block_weeks : int, default 4
        Moving-block length of the residual bootstrap.
    ci_level : float, default 0.9
        Level of the percentile intervals.
    seed : int, default 0
    max_rounds : int, default 4
        Coordinate-search rounds for the point fit.
    bootstrap_rounds : int, default 4
        Coordinate-search rounds per bootstrap draw (started from the point fit's choice).
    max_relative_width : float, default 0.5
        Identification rule: the interval must exclude 0 and be at most this fraction of the ROAS wide.
    min_spend_share : float, default 0.01
        Channels with less than this share of total spend are not modelled (reported as not
        identified): a few sends' worth of cost cannot carry a regression coefficient.
    warm_start_weeks : int, default 4
        Spend before the first week is taken to have run at the mean of the first this-many weeks
        (steady-state adstock, see :func:`geometric_adstock`); 0 starts the adstock at zero.

    Attributes
    ----------
    params_ : pandas.DataFrame
        Per channel: ``decay``, ``half_sat`` (multiple), ``half_sat_spend`` (K in adstocked spend),
        ``beta``.
    summary_ : pandas.DataFrame
        Per channel: ``spend, contribution, roas, roas_low, roas_high, mroas, mroas_low, mroas_high,
        identified, mean_weekly_spend`` (contract columns + extras).
    results_ : statsmodels RegressionResults
        The final OLS fit.
    draws_ : pandas.DataFrame
        Bootstrap draws: ``draw, channel, decay, half_sat_spend, beta``.
    """

    def __init__(
        self,
        *,
        decay_grid: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
        half_sat_grid: Sequence[float] = (0.5, 1.0, 2.0, 4.0),
        shape_grid: Sequence[float] = (1.0, 2.0),
        fourier_order: int = 2,
        trend: bool = True,
        trend_knot_weeks: int | None = 26,
        n_bootstrap: int = schema_default("roi.mmm.bootstrap"),
        block_weeks: int = schema_default("roi.mmm.block_weeks"),
        ci_level: float = 0.9,
        seed: int = schema_default("roi.mmm.seed"),
        max_rounds: int = 4,
        bootstrap_rounds: int = 4,
        max_relative_width: float = 0.5,
        min_spend_share: float = 0.01,
        warm_start_weeks: int = 4,
    ) -> None:
        self.decay_grid = tuple(decay_grid)
        self.half_sat_grid = tuple(half_sat_grid)
        self.shape_grid = tuple(shape_grid)
        self.fourier_order = fourier_order
        self.trend = trend
        self.trend_knot_weeks = trend_knot_weeks
        self.n_bootstrap = n_bootstrap
        self.block_weeks = block_weeks
        self.ci_level = ci_level
        self.seed = seed
        self.max_rounds = max_rounds
        self.bootstrap_rounds = bootstrap_rounds
        self.max_relative_width = max_relative_width
        self.min_spend_share = min_spend_share
        self.warm_start_weeks = warm_start_weeks

    def __repr__(self) -> str:
        if not hasattr(self, "summary_"):
            return "<MediaMixModel: not fitted>"
        ident = int(self.summary_["identified"].sum())
        return (
            f"<MediaMixModel: {self.n_weeks_} weeks, {len(self.channels_)} channels "
            f"({ident} identified), R^2={self.results_.rsquared:.3f}, {self.n_bootstrap} bootstrap draws>"
        )

    # -- fitting ----------------------------------------------------------------------------------
    def fit(self, weekly: pd.DataFrame, channels: Sequence[str] | None = None) -> MediaMixModel:
        """Fit on ``weekly`` (``week, revenue, <channel spend columns>``, one row per week).

        Raises
        ------
        CannotCompute
            When the data cannot support the model: no channel whose spend varies, fewer weeks than terms
            to estimate, or a regression that is numerically singular.
        """
        try:
            return self._fit(weekly, channels)
        except np.linalg.LinAlgError as exc:
            raise CannotCompute(_("the media-mix model's regression could not be solved on this data ({error}): "
                                  "the weekly spend series are too alike or too few to separate.").format(
                error=exc)) from exc

    def _fit(self, weekly: pd.DataFrame, channels: Sequence[str] | None) -> MediaMixModel:
        weekly = weekly.sort_values("week", ignore_index=True) if "week" in weekly else weekly
        if channels is None:
            channels = [c for c in weekly.columns if c not in ("week", "revenue")]
        spend = weekly[list(channels)].to_numpy(float)
        totals = spend.sum(axis=0)
        # a channel whose weekly spend never changes moves with the intercept: its effect cannot be told apart
        varies = (np.ptp(spend, axis=0) > 1e-9 * np.maximum(np.abs(spend).max(axis=0), 1.0) if len(spend)
                  else np.zeros(spend.shape[1], bool))
        active = (totals > 0) & (totals >= self.min_spend_share * max(totals.sum(), 0.0)) & varies
        self.channels_ = [c for c, a in zip(channels, active) if a]
        # (message, its values) per dropped channel: stored in English, said in the run's language
        dropped = {
            c: ((REASONS["no_spend"], {}) if t <= 0 else (REASONS["flat"], {}) if not v
                else (REASONS["small"], {"share": f"{self.min_spend_share:.0%}"}))
            for c, t, v, a in zip(channels, totals, varies, active)
            if not a
        }
        self.dropped_channels_ = {c: message.format(**values) for c, (message, values) in dropped.items()}
        if not self.channels_:
            why = (_("; ").join(_("{channel}: {reason}").format(channel=c, reason=_(message).format(**values))
                                for c, (message, values) in dropped.items()) or _("no channels"))
            raise CannotCompute(_(
                "the media-mix model learns a channel's effect from weeks with more and with less spend; no "
                "channel's spend varies over these {weeks} weeks ({why}).").format(weeks=len(weekly), why=why))
        self._dropped_spend = {c: float(t) for c, t, a in zip(channels, totals, active) if not a}
        self._n_weeks_all = len(weekly)
        x = spend[:, active]
        y = weekly["revenue"].to_numpy(float)
        n, k = x.shape
        self.n_weeks_ = n
        t = np.arange(n, dtype=float)
        knots = (list(range(self.trend_knot_weeks, n - self.trend_knot_weeks // 2, self.trend_knot_weeks))
                 if self.trend and self.trend_knot_weeks else [])
        base = [np.ones(n)] + ([t] if self.trend else []) + [np.maximum(0.0, t - k) for k in knots]
        self.base_names_ = ["const"] + (["trend"] if self.trend else []) + [f"trend_after_{k}" for k in knots]
        fourier = fourier_terms(n, self.fourier_order)
        self.base_names_ += [f"{f}{i}" for i in range(1, self.fourier_order + 1) for f in ("sin", "cos")]
        base_x = np.column_stack(base + ([fourier] if fourier.size else []))
        if n <= base_x.shape[1] + k + 2:
            raise CannotCompute(_("the media-mix model needs more weeks than terms to estimate: {weeks} weeks for "
                                  "{channels} channel(s) and {terms} trend and seasonality terms. A longer period "
                                  "fixes it.").format(weeks=n, channels=k, terms=base_x.shape[1]))
        # every candidate transform of every channel, computed once (the spend never changes)
        self._grid = [(d, h, sh) for d in self.decay_grid for h in self.half_sat_grid for sh in self.shape_grid]
        feats = np.empty((k, len(self._grid), n))
        self._half_sat_spend = np.empty((k, len(self._grid)))
        for c in range(k):
            for g, (d, h, sh) in enumerate(self._grid):
                a = geometric_adstock(x[:, c], d, warm_start=self.warm_start_weeks)
                ks = h * a.mean()
                self._half_sat_spend[c, g] = ks
                feats[c, g] = hill(a, ks, sh)
        self._feats, self._base_x, self._x = feats, base_x, x
        choice = np.full(k, self._grid.index(self._nearest(0.3, 1.0, 1.0)))
        choice = self._search(y, choice, self.max_rounds)
        design = self._design(choice)
        names = self.base_names_ + self.channels_
        self.results_ = sm.OLS(y, pd.DataFrame(design, columns=names)).fit()
        beta = self.results_.params.to_numpy()[-k:]
        self.choice_ = choice
        self.params_ = pd.DataFrame(
            {
                "decay": [self._grid[g][0] for g in choice],
                "half_sat": [self._grid[g][1] for g in choice],
                "half_sat_spend": [self._half_sat_spend[c, g] for c, g in enumerate(choice)],
                "shape": [self._grid[g][2] for g in choice],
                "beta": beta,
            },
            index=pd.Index(self.channels_, name="channel"),
        )
        self._y = y
        self._bootstrap(y)
        self._summarise()
        return self

    def _nearest(self, decay: float, half_sat: float, shape: float) -> tuple[float, float, float]:
        return min(self._grid, key=lambda g: (abs(g[0] - decay), abs(np.log(g[1] / half_sat)), abs(g[2] - shape)))

    def _design(self, choice: np.ndarray) -> np.ndarray:
        return np.column_stack([self._base_x] + [self._feats[c, g] for c, g in enumerate(choice)])

    def _search(self, y: np.ndarray, choice: np.ndarray, rounds: int) -> np.ndarray:
        choice = choice.copy()
        k = len(choice)
        for _round in range(rounds):
            changed = False
            for c in range(k):
                others = np.column_stack(
                    [self._base_x] + [self._feats[j, g] for j, g in enumerate(choice) if j != c]
                )
                sse = _sse_adding_each(others, self._feats[c], y)
                best = int(np.argmin(sse))  # first minimum: deterministic tie-break
                if best != choice[c]:
                    choice[c], changed = best, True
            if not changed:
                break
        return choice

    def _bootstrap(self, y: np.ndarray) -> None:
        rng = np.random.default_rng(self.seed)
        fitted = self.results_.fittedvalues.to_numpy()
        resid = self.results_.resid.to_numpy()
        n, k, b = len(y), len(self.channels_), max(1, min(self.block_weeks, len(y)))
        n_blocks = int(np.ceil(n / b))
        rows = []
        for draw in range(self.n_bootstrap):
            starts = rng.integers(0, n - b + 1, n_blocks)
            e = np.concatenate([resid[s : s + b] for s in starts])[:n]
            y_star = fitted + e - e.mean() + resid.mean()
            choice = self._search(y_star, self.choice_, self.bootstrap_rounds)
            design = self._design(choice)
            coef, *_ = np.linalg.lstsq(design, y_star, rcond=None)
            for c, g in enumerate(choice):
                rows.append((draw, self.channels_[c], self._grid[g][0], self._half_sat_spend[c, g], self._grid[g][2],
                             coef[-k + c], g))
        self.draws_ = pd.DataFrame(rows, columns=["draw", "channel", "decay", "half_sat_spend", "shape", "beta", "grid"])

    # -- per-channel quantities -------------------------------------------------------------------
    def _roas(self, c: int, grid: int, beta: float) -> float:
        return beta * self._feats[c, grid].sum() / self._x[:, c].sum()

    @staticmethod
    def _mroas(decay: float, half_sat_spend: float, beta: float, weekly_spend: float, shape: float) -> float:
        a = weekly_spend / (1.0 - decay)
        s, ks = shape, half_sat_spend
        if a <= 0:
            return beta / ks / (1.0 - decay) if s == 1 else 0.0
        deriv_hill = s * (a / ks) ** (s - 1) / ks / (1.0 + (a / ks) ** s) ** 2
        return beta * deriv_hill / (1.0 - decay)

    def _profile_set(self, c: int, mean_spend: float) -> tuple[np.ndarray, np.ndarray]:
        """ROAS and mROAS at every grid point of channel ``c`` not rejected by the profile likelihood.

        A grid point is kept when its residual sum of squares (other channels at their chosen
        transforms, betas refitted) exceeds the minimum by at most ``s2 * chi2_3(ci_level)``.
        """
        y = self._y
        n, p = len(y), self._design(self.choice_).shape[1]
        sse_min = float(self.results_.ssr)
        s2 = sse_min / max(n - p, 1)
        limit = s2 * stats.chi2.ppf(self.ci_level, df=3)
        others = np.column_stack([self._base_x] + [self._feats[j, g] for j, g in enumerate(self.choice_) if j != c])
        sse, beta = _sse_adding_each(others, self._feats[c], y, with_beta=True)
        roas, mroas = [], []
        for g, (decay, _half_sat, shape) in enumerate(self._grid):
            if sse[g] - sse_min <= limit or g == self.choice_[c]:
                roas.append(self._roas(c, g, beta[g]))
                mroas.append(self._mroas(decay, self._half_sat_spend[c, g], beta[g], mean_spend, shape))
        return np.array(roas), np.array(mroas)

    def _summarise(self) -> None:
        alpha = (1.0 - self.ci_level) / 2.0
        rows = []
        for c, ch in enumerate(self.channels_):
            p = self.params_.loc[ch]
            mean_spend = self._x[:, c].mean()
            roas = self._roas(c, self.choice_[c], p["beta"])
            mroas = self._mroas(p["decay"], p["half_sat_spend"], p["beta"], mean_spend, p["shape"])
            d = self.draws_[self.draws_["channel"] == ch]
            roas_b = np.array([self._roas(c, g, be) for g, be in zip(d["grid"], d["beta"])])
            mroas_b = np.array(
                [self._mroas(de, ks, be, mean_spend, sh)
                 for de, ks, be, sh in zip(d["decay"], d["half_sat_spend"], d["beta"], d["shape"])]
            )
            lo, hi = np.quantile(roas_b, [alpha, 1 - alpha])
            mlo, mhi = np.quantile(mroas_b, [alpha, 1 - alpha])
            prof_roas, prof_mroas = self._profile_set(c, mean_spend)
            lo, hi = min(lo, prof_roas.min()), max(hi, prof_roas.max())
            mlo, mhi = min(mlo, prof_mroas.min()), max(mhi, prof_mroas.max())
            identified = bool(lo > 0 and (hi - lo) <= self.max_relative_width * roas)
            reason = (
                REASONS["identified"] if identified
                else REASONS["negative"] if hi < 0
                else REASONS["includes_zero"] if lo <= 0
                else REASONS["wide"].format(width=f"{self.max_relative_width:g}")
            )
            rows.append(
                {
                    "channel": ch,
                    "spend": float(self._x[:, c].sum()),
                    "mean_weekly_spend": float(mean_spend),
                    "contribution": float(p["beta"] * self._feats[c, self.choice_[c]].sum()),
                    "roas_estimate": float(roas),
                    "roas": float(roas) if identified else np.nan,
                    "roas_low": float(lo),
                    "roas_high": float(hi),
                    "mroas": float(mroas) if identified else np.nan,
                    "mroas_low": float(mlo),
                    "mroas_high": float(mhi),
                    "identified": identified,
                    "reason": reason,
                    "decay": float(p["decay"]),
                    "half_sat": float(p["half_sat"]),
                    "shape": float(p["shape"]),
                }
            )
        for ch, why in self.dropped_channels_.items():
            spend = self._dropped_spend[ch]
            rows.append({"channel": ch, "spend": spend, "mean_weekly_spend": spend / max(self._n_weeks_all, 1),
                         "identified": False, "reason": REASONS["not_modelled"].format(why=why)})
        self.summary_ = pd.DataFrame(rows)
        self.summary_.attrs["convention"] = CONVENTION.format(
            level=f"{self.ci_level:.0%}", weeks=self.block_weeks, draws=self.n_bootstrap, seed=self.seed,
            width=f"{self.max_relative_width:g}")

    # -- response curves --------------------------------------------------------------------------
    def response(self, channel: str, weekly_spend: np.ndarray | float, *, draws: bool = False) -> np.ndarray:
        """Steady-state weekly revenue ``beta * hill(spend / (1 - decay))`` at ``weekly_spend``.

        With ``draws=True`` returns an array ``(n_bootstrap, len(weekly_spend))``, one curve per draw.
        """
        s = np.atleast_1d(np.asarray(weekly_spend, dtype=float))
        if draws:
            d = self.draws_[self.draws_["channel"] == channel]
            return np.array(
                [be * hill(s / (1 - de), ks, sh)
                 for de, ks, be, sh in zip(d["decay"], d["half_sat_spend"], d["beta"], d["shape"])]
            )
        p = self.params_.loc[channel]
        return p["beta"] * hill(s / (1 - p["decay"]), p["half_sat_spend"], p["shape"])

    def response_curves(self, n_points: int = 50, max_multiple: float = 2.0) -> pd.DataFrame:
        """Response curves for every channel: ``channel, weekly_spend, response, low, high``."""
        alpha = (1.0 - self.ci_level) / 2.0
        frames = []
        for c, ch in enumerate(self.channels_):
            grid = np.linspace(0.0, max_multiple * max(self._x[:, c].mean(), 1e-12), n_points)
            curves = self.response(ch, grid, draws=True)
            frames.append(
                pd.DataFrame(
                    {
                        "channel": ch,
                        "weekly_spend": grid,
                        "response": self.response(ch, grid),
                        "low": np.quantile(curves, alpha, axis=0),
                        "high": np.quantile(curves, 1 - alpha, axis=0),
                        "current_weekly_spend": self._x[:, c].mean(),
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)
