"""The path table: the one aggregate every attribution model reads.

Convention
----------
A path table is a :class:`pandas.DataFrame` with one row per distinct journey path:

``path`` : str
    The channels touched, in time order, joined by ``">"`` (``"search>email>search"``). Repeats are
    kept (heuristics count every touch); the Markov model collapses consecutive repeats itself.
    Channel names must not contain ``">"``.
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

from collections.abc import Iterable, Sequence
from itertools import groupby
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "SEP",
    "BASE_MEASURES",
    "make_path_table",
    "measures_of",
    "split_path",
    "collapse_repeats",
    "decay_weights",
    "validate_path_table",
    "tokenize",
    "Tokens",
]

SEP = ">"
BASE_MEASURES = ("conversions", "value")
_RESERVED = {"path", "nulls"}


def split_path(path: str) -> list[str]:
    """Channels of a ``">"``-joined path (an empty string is the empty path)."""
    return path.split(SEP) if path else []


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
    if (paths["path"] == "").any():
        raise ValueError("empty paths are not attributable; keep untouched conversions out of the path table")
    return paths


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
        The path table (see module docstring), sorted by path.
    """
    rows: dict[str, dict] = {}
    for journey in journeys:
        channels, converted, value = journey[0], bool(journey[1]), float(journey[2])
        ages = journey[3] if len(journey) > 3 else None
        extra = journey[4] if len(journey) > 4 else {}
        if not channels:
            raise ValueError("journeys need at least one touch")
        path = SEP.join(channels)
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
            n = out["path"].map(lambda p: len(split_path(p)))
            out[col] = [v if isinstance(v, np.ndarray) else np.zeros(k) for v, k in zip(out[col], n)]
        elif col != "path":
            out[col] = out[col].fillna(0.0).astype(float)
    return out.sort_values("path", ignore_index=True)


class Tokens(NamedTuple):
    """Integer encoding of a path column (see :func:`tokenize`)."""

    channels: list[str]
    codes: np.ndarray
    row: np.ndarray
    lengths: np.ndarray


def tokenize(paths: pd.Series | Sequence[str]) -> Tokens:
    """Encode paths as flat integer codes (vectorised with Arrow compute).

    Returns ``(channels, codes, row, lengths)``: the sorted channel names, the channel code of every
    touch (paths concatenated in order), the path row of every touch and the touches per path.
    """
    arr = pa.array(paths.array if isinstance(paths, pd.Series) else list(paths), type=pa.large_string())
    if len(arr) == 0:
        empty = np.array([], dtype=np.int64)
        return Tokens([], empty, empty, empty)
    if pc.any(pc.equal(arr, "")).as_py():
        raise ValueError("empty path")
    split = pc.split_pattern(arr, SEP)
    lengths = pc.list_value_length(split).to_numpy(zero_copy_only=False).astype(np.int64)
    encoded = pc.dictionary_encode(pc.list_flatten(split))
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    names = np.array(encoded.dictionary.to_pylist(), dtype=object)
    order = np.argsort(names, kind="stable")
    rank = np.empty(len(names), dtype=np.int64)
    rank[order] = np.arange(len(names))
    codes = rank[encoded.indices.to_numpy(zero_copy_only=False)]
    row = np.repeat(np.arange(len(arr)), lengths)
    return Tokens(list(names[order]), codes, row, lengths)
