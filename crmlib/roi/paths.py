"""The path table: the one aggregate every attribution model reads.

Convention
----------
A path table is a :class:`pandas.DataFrame` with one row per distinct journey path:

``path`` : tuple
    The steps touched, in time order, as a tuple (``("search", "email", "search")``). Repeats are
    kept (heuristics count every touch); the Markov model collapses consecutive repeats itself.
    A step is a *label*: a channel name (any text: ``"Social > WeChat"``, ``"Paid:Baidu"``, ``"小程序"``
    are channels like any other) or, for campaign-level attribution, the pair
    ``(channel, campaign_id)`` with ``None`` for a touch without a campaign. Names are carried as
    data and never joined into or parsed out of a string, so no character in a name is special.
``conversions`` : float
    Number of converting journeys with this path (one conversion = one positive order).
``value`` : float
    Sum of the conversion values (order amounts) of those journeys.
``nulls`` : float
    Number of non-converting journeys with this path.

Optional *measure* columns (any other numeric column named in ``measures``), e.g. ``new_customers``
(conversions that were the customer's first order) or ``new_clv``: every model credits every measure
with the same rule it uses for ``conversions``, so each model's credits of each measure sum to the
measure's observed total.

Optional time-decay columns ``decay_<measure>``: for each path, an array with one entry per touch
position holding the sum over the path's journeys of ``measure x normalised decay weight`` of that
touch (weights ``2 ** (-age_days / half_life_days)`` normalised to sum 1 within a journey, age =
conversion time - touch time). They are built by :func:`crmlib.roi.journeys.build_journeys` because
touch ages are row-level facts; :func:`make_path_table` builds them from explicit ages for tests.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from itertools import chain, groupby
from typing import NamedTuple

import numpy as np
import pandas as pd

__all__ = [
    "BASE_MEASURES",
    "make_path_table",
    "measures_of",
    "label_array",
    "label_sort_key",
    "sort_labels",
    "sort_paths",
    "sort_by_label",
    "collapse_repeats",
    "decay_weights",
    "validate_path_table",
    "tokenize",
    "Tokens",
]

BASE_MEASURES = ("conversions", "value")
_RESERVED = {"path", "nulls"}


def label_sort_key(label: Hashable) -> tuple:
    """Sort key of a step label: names in code-point order; in a ``(channel, campaign_id)`` pair a
    missing campaign (``None``) sorts before every campaign of its channel."""
    parts = label if isinstance(label, tuple) else (label,)
    return tuple((0, "") if v is None else (1, str(v)) for v in parts)


def sort_labels(labels: Iterable[Hashable]) -> list:
    """Distinct step labels in :func:`label_sort_key` order."""
    return sorted(set(labels), key=label_sort_key)


def label_array(labels: Sequence[Hashable]) -> np.ndarray:
    """A 1-d object array of labels (``np.asarray`` would turn a list of pairs into a 2-d array)."""
    return np.fromiter(labels, dtype=object, count=len(labels))


def collapse_repeats(channels: Sequence[str]) -> list[str]:
    """Collapse consecutive repeats: ``[a, a, b, a] -> [a, b, a]``."""
    return [k for k, _ in groupby(channels)]


def decay_weights(ages_days: Sequence[float], half_life_days: float) -> np.ndarray:
    """Normalised time-decay weights ``2**(-age/half_life) / sum``; ages in days before conversion."""
    if half_life_days <= 0:
        raise ValueError("half_life_days must be positive")
    raw = np.exp2(-np.asarray(ages_days, dtype=float) / half_life_days)
    return raw / raw.sum()


def measures_of(paths: pd.DataFrame) -> list[str]:
    """Measure columns of a path table: ``conversions``, ``value`` and any extra numeric columns."""
    extra = [
        c
        for c in paths.columns
        if c not in _RESERVED
        and c not in BASE_MEASURES
        and not c.startswith("decay_")
        and pd.api.types.is_numeric_dtype(paths[c])
    ]
    return [*BASE_MEASURES, *extra]


def validate_path_table(paths: pd.DataFrame) -> pd.DataFrame:
    """Check the path-table convention; return ``paths`` unchanged or raise ``ValueError``."""
    missing = {"path", "conversions", "value", "nulls"} - set(paths.columns)
    if missing:
        raise ValueError(f"path table lacks columns {sorted(missing)}")
    for col in ("conversions", "value", "nulls"):
        if (paths[col] < 0).any():
            raise ValueError(f"path table column {col!r} has negative entries")
    if not all(isinstance(p, tuple) for p in paths["path"]):
        raise ValueError("path table column 'path' must hold tuples of step labels (names are data, "
                         "never '>'-joined strings)")
    if (paths["path"].map(len) == 0).any():
        raise ValueError("empty paths are not attributable; keep untouched conversions out of the path table")
    return paths


def sort_by_label(frame: pd.DataFrame, column: str = "channel") -> pd.DataFrame:
    """``frame`` sorted by a column of step labels (:func:`label_sort_key` order), index reset."""
    keys = [label_sort_key(v) for v in frame[column]]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return frame.iloc[order].reset_index(drop=True)


def sort_paths(paths: pd.DataFrame) -> pd.DataFrame:
    """The path table sorted by path (step by step, in :func:`label_sort_key` order), index reset."""
    keys = [tuple(map(label_sort_key, p)) for p in paths["path"]]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return paths.iloc[order].reset_index(drop=True)


def make_path_table(
    journeys: Iterable[tuple],
    *,
    half_life_days: float | None = None,
) -> pd.DataFrame:
    """Build a path table from explicit journeys (for tests, examples and simulations).

    Parameters
    ----------
    journeys : iterable of tuples
        ``(channels, converted, value)`` or ``(channels, converted, value, ages_days)`` or
        ``(channels, converted, value, ages_days, extra_measures: dict)``. ``channels`` is a
        sequence of channel names in time order; ``ages_days`` the touch ages at conversion.
    half_life_days : float, optional
        When given (and ages are given), add ``decay_<measure>`` columns.

    Returns
    -------
    pandas.DataFrame
        The path table (see module docstring), sorted by path; ``path`` holds ``tuple(channels)``.
    """
    rows: dict[str, dict] = {}
    for journey in journeys:
        channels, converted, value = journey[0], bool(journey[1]), float(journey[2])
        ages = journey[3] if len(journey) > 3 else None
        extra = journey[4] if len(journey) > 4 else {}
        if not channels:
            raise ValueError("journeys need at least one touch")
        path = tuple(channels)
        row = rows.setdefault(path, {"path": path, "conversions": 0.0, "value": 0.0, "nulls": 0.0})
        if not converted:
            row["nulls"] += 1
            continue
        measures = {"conversions": 1.0, "value": value, **{k: float(v) for k, v in extra.items()}}
        for k, v in measures.items():
            row[k] = row.get(k, 0.0) + v
        if half_life_days is not None and ages is not None:
            w = decay_weights(ages, half_life_days)
            for k, v in measures.items():
                key = f"decay_{k}"
                row[key] = row.get(key, np.zeros(len(channels))) + v * w
    out = pd.DataFrame(list(rows.values()))
    for col in out.columns:
        if col.startswith("decay_"):
            n = out["path"].map(len)
            out[col] = [v if isinstance(v, np.ndarray) else np.zeros(k) for v, k in zip(out[col], n)]
        elif col != "path":
            out[col] = out[col].fillna(0.0).astype(float)
    return sort_paths(out)


class Tokens(NamedTuple):
    """Integer encoding of a path column (see :func:`tokenize`)."""

    channels: list[str]
    codes: np.ndarray
    row: np.ndarray
    lengths: np.ndarray


def tokenize(paths: pd.Series | Sequence[tuple]) -> Tokens:
    """Encode paths as flat integer codes.

    Returns ``(channels, codes, row, lengths)``: the step labels in :func:`label_sort_key` order, the
    label code of every touch (paths concatenated in order), the path row of every touch and the
    touches per path. Labels are compared as whole values, so any text is one label.
    """
    seqs = list(paths)
    lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
    if len(seqs) == 0:
        empty = np.array([], dtype=np.int64)
        return Tokens([], empty, empty, empty)
    if (lengths == 0).any():
        raise ValueError("empty path")
    if not all(isinstance(p, tuple) for p in seqs):
        raise ValueError("paths must be tuples of step labels (names are data, never '>'-joined strings)")
    flat = np.fromiter(chain.from_iterable(seqs), dtype=object, count=int(lengths.sum()))
    first_seen, names = pd.factorize(flat)
    order = sorted(range(len(names)), key=lambda i: label_sort_key(names[i]))
    rank = np.empty(len(names), dtype=np.int64)
    rank[order] = np.arange(len(names))
    codes = rank[first_seen]
    row = np.repeat(np.arange(len(seqs)), lengths)
    return Tokens([names[i] for i in order], codes, row, lengths)
