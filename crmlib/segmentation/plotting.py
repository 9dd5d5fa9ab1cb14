"""Segmentation figures. Every function draws on ``ax`` (a new one when None) and returns the Axes;
labels state the time unit and the calibration end where they apply. No customer identifiers are drawn."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import PercentFormatter

from crmlib.i18n import N_, _
from crmlib.params import schema_default
from crmlib.plotting import color_for
from crmlib.present import fmt_count
from crmlib.segmentation.rfm import SEGMENTS, rf_grid

__all__ = [
    "plot_rf_heatmap",
    "plot_clv_by_segment",
    "plot_frequency_recency_matrix",
    "plot_probability_alive_matrix",
    "plot_calibration_holdout",
    "plot_k_scan",
    "plot_segment_shares",
    "plot_migration_matrix",
]

#: time unit -> its plural (a catalog message, translated where drawn)
UNIT_WORDS = {"D": N_("days"), "W": N_("weeks"), "M": N_("months")}
MAX_GRID = 60  # frequency/recency matrices are capped at this many rows and columns


def _ax(ax: Axes | None, size=(6, 4.5)) -> Axes:
    if ax is None:
        ax = plt.subplots(figsize=size)[1]
    return ax


def _unit(time_unit: str | None) -> str:
    """The plural word of a time unit in the report's language (an unknown unit as it is)."""
    return _(UNIT_WORDS[time_unit]) if time_unit in UNIT_WORDS else str(time_unit)


def _annotate_grid(ax: Axes, values: np.ndarray, fmt: str) -> None:
    finite = values[np.isfinite(values)]
    mid = (finite.max() + finite.min()) / 2 if finite.size else 0
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if np.isfinite(values[i, j]):
                ax.text(
                    j,
                    i,
                    format(values[i, j], fmt),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if values[i, j] > mid else "black",
                )


def plot_rf_heatmap(
    scored: pd.DataFrame, value: str | None = None, as_of: str | None = None, ax: Axes | None = None
) -> Axes:
    """R x F score heat map of customer counts (or the mean of ``value``), R = 5 (most recent) on top."""
    ax = _ax(ax)
    grid = rf_grid(scored, value)
    values = grid.to_numpy(float)
    im = ax.imshow(values, cmap="Blues", aspect="auto")
    _annotate_grid(ax, values, ".0f" if value is None else ".1f")
    ax.set_xticks(range(5), [str(c) for c in grid.columns])
    ax.set_yticks(range(5), [str(i) for i in grid.index])
    ax.set_xlabel(_("F score (5 = most purchase days)"))
    ax.set_ylabel(_("R score (5 = most recent)"))
    what = _("customers") if value is None else _("mean {value}").format(value=value)
    title = _("R x F: {what}").format(what=what)
    ax.set_title(_("{title} (as of {as_of})").format(title=title, as_of=as_of) if as_of else title)
    ax.figure.colorbar(im, ax=ax, label=what)
    return ax


def plot_clv_by_segment(
    clv: pd.DataFrame,
    segment_col: str = "segment",
    *,
    time_unit: str = schema_default("segmentation.clv.time_unit"),
    horizon: float | None = None,
    calibration_end: str | None = None,
    currency: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Box plot (no outlier dots, whiskers at 5-95 %) of CLV per segment; segments in RFM order."""
    ax = _ax(ax, (8, 4.5))
    present = set(clv[segment_col].dropna().unique())  # once: a million customers' labels, not per segment
    order = [s for s in SEGMENTS if s in present] + sorted(present - set(SEGMENTS), key=str)
    data = [clv.loc[clv[segment_col] == s, "clv"].to_numpy(float) for s in order]
    boxes = ax.boxplot(data, showfliers=False, whis=(5, 95), patch_artist=True)
    for patch, segment in zip(boxes["boxes"], order):
        patch.set(facecolor=color_for(segment, "segment"), alpha=0.8)
    ax.set_xticks(range(1, len(order) + 1), [_(str(s)) for s in order], rotation=30, ha="right")
    unit = _unit(time_unit)
    h = _("{n} {unit}").format(n=f"{horizon:g}", unit=unit) if horizon is not None else unit
    ax.set_ylabel(f"CLV ({currency})" if currency else "CLV")
    title = _("CLV over {horizon} by segment").format(horizon=h)
    ax.set_title(_("{title} (calibration end {end})").format(title=title, end=calibration_end)
                 if calibration_end else title)
    return ax


def _fr_grid(model, max_frequency: int | None, max_recency: float | None, T: float | None):
    if T is None:
        raise ValueError("T (the observation length shown) is required")
    max_frequency = int(min(max_frequency if max_frequency is not None else 20, MAX_GRID - 1))
    max_recency = float(T if max_recency is None else min(max_recency, T))
    freq = np.arange(0, max_frequency + 1)
    rec = np.linspace(0, max_recency, min(MAX_GRID, int(np.ceil(max_recency)) + 1))
    f_grid, r_grid = np.meshgrid(freq, rec, indexing="ij")
    valid = ~((f_grid == 0) & (r_grid > 0))
    return freq, rec, f_grid, r_grid, valid, T


def _matrix_plot(ax, values, freq, rec, title, cbar_label, time_unit):
    im = ax.imshow(
        values, origin="lower", aspect="auto", cmap="viridis", extent=(rec[0], rec[-1], freq[0] - 0.5, freq[-1] + 0.5)
    )
    ax.set_xlabel(_("recency t_x ({unit} from first to last purchase)").format(unit=_unit(time_unit)))
    ax.set_ylabel(_("frequency x (repeat purchase days)"))
    ax.set_title(title)
    ax.figure.colorbar(im, ax=ax, label=cbar_label)
    return ax


def plot_frequency_recency_matrix(
    model,
    T: float | None = None,
    horizon: float = 1.0,
    max_frequency: int | None = None,
    max_recency: float | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Expected repeat purchases in the next ``horizon`` time units for a customer observed for T,
    by frequency (rows) and recency (columns). The grid is at most 60 x 60; x = 0 needs t_x = 0, so
    the other cells of that row are blank."""
    ax = _ax(ax)
    freq, rec, f_grid, r_grid, valid, T = _fr_grid(model, max_frequency, max_recency, T)
    values = np.where(
        valid,
        model.conditional_expected_number_of_purchases_up_to_time(horizon, f_grid, r_grid, np.full(f_grid.shape, T)),
        np.nan,
    )
    unit = model.time_unit or "?"
    title = _("Expected purchases in next {horizon} {unit} (T={T})").format(horizon=f"{horizon:g}", unit=_unit(unit),
                                                                            T=f"{T:g}")
    if model.calibration_end:
        title = _("{title} (calibration end {end})").format(title=title, end=model.calibration_end)
    return _matrix_plot(ax, values, freq, rec, title, _("expected purchases"), unit)


def plot_probability_alive_matrix(
    model,
    T: float | None = None,
    max_frequency: int | None = None,
    max_recency: float | None = None,
    ax: Axes | None = None,
) -> Axes:
    """P(alive) by frequency and recency for a customer observed for T time units (grid <= 60 x 60)."""
    ax = _ax(ax)
    freq, rec, f_grid, r_grid, valid, T = _fr_grid(model, max_frequency, max_recency, T)
    values = np.where(valid, model.conditional_probability_alive(f_grid, r_grid, np.full(f_grid.shape, T)), np.nan)
    unit = model.time_unit or "?"
    title = _("P(alive) (T={T} {unit})").format(T=f"{T:g}", unit=_unit(unit))
    if model.calibration_end:
        title = _("{title} (calibration end {end})").format(title=title, end=model.calibration_end)
    return _matrix_plot(ax, values, freq, rec, title, _("P(alive)"), unit)


def plot_calibration_holdout(evaluation, ax: Axes | None = None) -> Axes:
    """Actual vs predicted mean holdout repeat purchases by calibration frequency (0 .. 7+)."""
    ax = _ax(ax)
    table = evaluation.table.drop(index="total")
    x = np.arange(len(table))
    ax.plot(x, table["actual_mean"], "o-", label=_("actual"))
    ax.plot(x, table["predicted_mean"], "s--", label=_("predicted (BG/NBD)"))
    ax.set_xticks(x, list(table.index))
    ax.set_xlabel(_("repeat purchases in calibration period"))
    ax.set_ylabel(_("mean repeat purchases in holdout ({n} {unit})").format(
        n=f"{evaluation.duration_holdout:g}", unit=_unit(evaluation.time_unit)))
    ax.set_title(_("Calibration to {calibration_end} vs holdout to {holdout_end}").format(
        calibration_end=evaluation.calibration_end, holdout_end=evaluation.holdout_end))
    ax.legend()
    return ax


def plot_k_scan(scan: pd.DataFrame, chosen_k: int | None = None, ax: Axes | None = None) -> Axes:
    """Inertia (left axis) and silhouette (right axis) over k."""
    ax = _ax(ax)
    ax.plot(scan["k"], scan["inertia"], "o-", color="tab:blue")
    ax.set_xlabel(_("k (clusters)"))
    ax.set_ylabel(_("inertia"), color="tab:blue")
    twin = ax.twinx()
    twin.plot(scan["k"], scan["silhouette"], "s--", color="tab:orange")
    twin.set_ylabel(_("silhouette"), color="tab:orange")
    if chosen_k is not None:
        ax.axvline(chosen_k, color="grey", linestyle=":")
    notes = [_("chosen k={k}").format(k=chosen_k)] if chosen_k else []
    if "rows" in scan.attrs:
        notes.append(_("{n} customers").format(n=fmt_count(scan.attrs["rows"])))
    title = _("K-means scan on log-scaled, standardised R, F, M")
    ax.set_title(_("{title} ({notes})").format(title=title, notes=_(", ").join(notes)) if notes else title)
    return ax


def plot_segment_shares(segments: pd.DataFrame, as_of: str | None = None, ax: Axes | None = None) -> Axes:
    """Share of customers vs share of net revenue per RFM segment (the :func:`segment_table` frame)."""
    ax = _ax(ax, (8, 4.5))
    y = np.arange(len(segments))
    # each segment in its own colour on every page; revenue hatched so the two bars stay apart
    colours = [color_for(s, "segment") for s in segments["segment"]]
    ax.barh(y - 0.2, segments["share_customers"], height=0.4, color=colours, label=_("share of customers"))
    ax.barh(y + 0.2, segments["share_revenue"], height=0.4, color=colours, alpha=0.55, hatch="//",
            edgecolor="white", label=_("share of net revenue"))
    ax.set_yticks(y, [_(str(s)) for s in segments["segment"]])
    ax.invert_yaxis()
    ax.set_xlabel(_("share"))
    ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))  # shares read as %, like the tables
    ax.set_title(_("{title} (as of {as_of})").format(title=_("RFM segments"), as_of=as_of) if as_of
                 else _("RFM segments"))
    from matplotlib.patches import Patch  # neutral legend keys: the bars carry the segment colours

    ax.legend(handles=[Patch(facecolor="#777777", label=_("share of customers")),
                       Patch(facecolor="#777777", alpha=0.55, hatch="//", edgecolor="white",
                             label=_("share of net revenue"))], loc="lower right")
    return ax


def plot_migration_matrix(matrix: pd.DataFrame, as_of: str | None = None, ax: Axes | None = None) -> Axes:
    """Loyalty-tier migration: customers by tier a year before ``as_of`` (rows) and now (columns)."""
    ax = _ax(ax)
    values = matrix.to_numpy(float)
    im = ax.imshow(values, cmap="Greens", aspect="auto")
    _annotate_grid(ax, values, ".0f")
    ax.set_xticks(range(values.shape[1]), [_(str(c)) for c in matrix.columns])
    ax.set_yticks(range(values.shape[0]), [_(str(i)) for i in matrix.index])
    ax.set_xlabel(_("tier now (12-month net spend)"))
    ax.set_ylabel(_("tier a year before"))
    title = _("Loyalty tier migration")
    ax.set_title(_("{title} (as of {as_of})").format(title=title, as_of=as_of) if as_of else title)
    ax.figure.colorbar(im, ax=ax, label=_("customers"))
    return ax
