"""Rule-based attribution over a path table: first touch, last touch, linear, time-decay, position-based.

Every rule gives each converting journey's measures (conversions, value, ...) to its touches with
shares that sum to 1, so each model's credits sum to the observed totals of every measure.
Touches are counted with repeats (path ``(a, a, b)`` gives ``a`` two linear shares of three). Non-converting
journeys (``nulls``) carry no credit under these rules.

Output of every function: a DataFrame with one row per channel, columns ``channel`` and one column per
measure of the path table (``conversions``, ``value``, extras), sorted by channel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from crmlib.roi.paths import label_array, measures_of, tokenize, validate_path_table

__all__ = [
    "first_touch",
    "last_touch",
    "linear",
    "time_decay",
    "position_based",
    "position_shares",
    "explode_paths",
]


def explode_paths(paths: pd.DataFrame) -> pd.DataFrame:
    """One row per touch of each converting path: ``row`` (path index), ``pos``, ``length``, ``code``
    (position of the touch's label in ``attrs["channels"]``, the sorted labels) and ``channel`` (the label)."""
    conv = paths[paths["conversions"] > 0]
    channels, codes, row, lengths = tokenize(conv["path"])
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    out = pd.DataFrame(
        {
            "row": conv.index.to_numpy()[row] if len(row) else np.array([], dtype=np.int64),
            "pos": np.arange(len(codes)) - starts,
            "length": np.repeat(lengths, lengths),
            "code": codes,
            "channel": label_array(channels)[codes] if len(codes) else np.array([], dtype=object),
        }
    )
    out.attrs["channels"] = channels
    return out


def _sum_by_label(touches: pd.DataFrame, credited: dict[str, np.ndarray]) -> pd.DataFrame:
    """Credits summed per label (grouped by code, so a label is never compared as text), in label order."""
    channels = touches.attrs["channels"]
    codes = touches["code"].to_numpy(np.int64)
    out = pd.DataFrame({"channel": label_array(channels)})
    for m, values in credited.items():
        out[m] = np.bincount(codes, weights=values, minlength=len(channels)) if len(channels) else np.array([])
    return out


def _credit(paths: pd.DataFrame, touches: pd.DataFrame, shares: np.ndarray) -> pd.DataFrame:
    positions = _positions(paths, touches)
    return _sum_by_label(touches, {m: shares * paths[m].to_numpy(float)[positions] for m in measures_of(paths)})


def _positions(paths: pd.DataFrame, touches: pd.DataFrame) -> np.ndarray:
    return paths.index.get_indexer(touches["row"].to_numpy())


def first_touch(paths: pd.DataFrame) -> pd.DataFrame:
    """All credit to the first touch of each converting journey."""
    validate_path_table(paths)
    t = explode_paths(paths)
    return _credit(paths, t, (t["pos"] == 0).to_numpy(float))


def last_touch(paths: pd.DataFrame) -> pd.DataFrame:
    """All credit to the last touch of each converting journey."""
    validate_path_table(paths)
    t = explode_paths(paths)
    return _credit(paths, t, (t["pos"] == t["length"] - 1).to_numpy(float))


def linear(paths: pd.DataFrame) -> pd.DataFrame:
    """Equal credit ``1/n`` to each of the ``n`` touches (repeats counted)."""
    validate_path_table(paths)
    t = explode_paths(paths)
    return _credit(paths, t, 1.0 / t["length"].to_numpy(float))


def position_shares(length: int, weights: Sequence[float] = (0.4, 0.2, 0.4)) -> np.ndarray:
    """Position-based shares for a journey of ``length`` touches.

    Convention: ``weights = (first, middle, last)`` summing to 1. One touch gets 100 %. Two touches
    have no middle, so the middle weight is shared pro rata between first and last
    (40/20/40 gives 50/50). Three or more: first and last get their weights, the middle weight is split
    evenly over the ``length - 2`` middle touches.
    """
    first, middle, last = _check_weights(weights)
    if length == 1:
        return np.array([1.0])
    if length == 2:
        return np.array([first, last]) / (first + last)
    return np.concatenate([[first], np.full(length - 2, middle / (length - 2)), [last]])


def _check_weights(weights: Sequence[float]) -> tuple[float, float, float]:
    if len(weights) != 3 or min(weights) < 0 or not np.isclose(sum(weights), 1.0):
        raise ValueError(f"position weights must be 3 non-negative numbers summing to 1, got {weights}")
    if weights[0] + weights[2] <= 0:
        raise ValueError("first + last position weight must be positive")
    return float(weights[0]), float(weights[1]), float(weights[2])


def position_based(paths: pd.DataFrame, weights: Sequence[float] = (0.4, 0.2, 0.4)) -> pd.DataFrame:
    """U-shaped credit (default 40/20/40); see :func:`position_shares` for 1- and 2-touch journeys."""
    validate_path_table(paths)
    first, middle, last = _check_weights(weights)
    t = explode_paths(paths)
    pos, n = t["pos"].to_numpy(), t["length"].to_numpy()
    shares = np.where(pos == 0, first, np.where(pos == n - 1, last, middle / np.maximum(n - 2, 1)))
    shares = np.where(n == 1, 1.0, np.where(n == 2, np.where(pos == 0, first, last) / (first + last), shares))
    return _credit(paths, t, shares)


def time_decay(paths: pd.DataFrame) -> pd.DataFrame:
    """Credit by touch age: share ``2**(-age/half_life)`` normalised within each journey.

    The half-life is fixed when the path table is built (the ``decay_<measure>`` columns carry the
    per-position credited sums, see :mod:`crmlib.roi.paths`); this function only adds them up.

    Raises
    ------
    ValueError
        If the path table has no ``decay_conversions`` column (built without touch ages).
    """
    validate_path_table(paths)
    if "decay_conversions" not in paths.columns:
        raise ValueError(
            "time-decay needs touch ages: build the path table with half_life_days "
            "(crmlib.roi.journeys.build_journeys or paths.make_path_table)"
        )
    measures = measures_of(paths)
    t = explode_paths(paths)
    conv = paths[paths["conversions"] > 0]
    credited = {}
    for m in measures:
        # explode_paths walks converting rows in order and positions 0..n-1, so the arrays line up.
        arrays = [np.asarray(a, dtype=float) for a in conv[f"decay_{m}"]]
        flat = np.concatenate(arrays) if arrays else np.array([], dtype=float)
        if len(flat) != len(t):
            raise ValueError(f"decay_{m} arrays do not match the path lengths")
        credited[m] = flat
    return _sum_by_label(t, credited)
