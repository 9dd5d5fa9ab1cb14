"""Exact Shapley-value attribution over channel subsets.

Characteristic function (the "coalition" definition)
----------------------------------------------------
For a set of channels ``S``, ``v(S)`` = the measure (conversions, value, ...) of the converting
journeys whose *set* of channels is a subset of ``S``::

    v(S) = sum over T subset of S of m(T),   m(T) = measure of journeys whose channel set is exactly T.

``v`` is the zeta transform of ``m``; its Möbius inverse (the Harsanyi dividends) is ``m`` itself, so
``v`` is a non-negative sum of unanimity games and its Shapley value is

    phi_i = sum over T containing i of m(T) / |T|.

Hence the credits are non-negative and sum to ``v(all channels)`` = the observed total (efficiency).
Note what this definition implies: each journey's measure is split equally over its *distinct*
channels, whatever their order or repetition. Order-aware credit is what the Markov model is for.

:func:`shapley_values` is the general exact solver for any characteristic function given on all
``2**n`` subsets (Möbius transform, ``O(2**n n)``); :class:`ShapleyAttribution` builds ``v`` from a
path table with the zeta transform and calls it (``n <= dense_max_channels``), and otherwise uses
the dividend formula on the sparse set of observed channel sets, which is the same number.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crmlib.roi.paths import Tokens, label_array, measures_of, tokenize, validate_path_table

__all__ = ["ShapleyAttribution", "shapley_values", "zeta_transform", "mobius_transform"]


def zeta_transform(f: np.ndarray) -> np.ndarray:
    """Subset-sum transform: ``g[S] = sum_{T subset of S} f[T]`` over bitmask-indexed arrays."""
    return _subset_sweep(f, +1.0)


def mobius_transform(g: np.ndarray) -> np.ndarray:
    """Inverse of :func:`zeta_transform`: ``f[S] = sum_{T subset of S} (-1)^{|S-T|} g[T]``."""
    return _subset_sweep(g, -1.0)


def _subset_sweep(values: np.ndarray, sign: float) -> np.ndarray:
    """One pass per bit adding (``sign=+1``, zeta) or subtracting (``-1``, Möbius) the value of the set
    without that bit: the two transforms differ only in that sign."""
    out = np.array(values, dtype=float, copy=True)
    n = int(np.log2(len(out)))
    if 1 << n != len(out):
        raise ValueError("length must be a power of two")
    idx = np.arange(len(out))
    for i in range(n):
        has = (idx >> i) & 1 == 1
        out[has] += sign * out[idx[has] ^ (1 << i)]
    return out


def _popcount(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.int64)
    count = np.zeros_like(x)
    while np.any(x):
        count += x & 1
        x = x >> 1
    return count


def shapley_values(v: np.ndarray) -> np.ndarray:
    """Exact Shapley values of a game given as ``v[bitmask]`` for all ``2**n`` coalitions.

    Uses the Harsanyi dividends ``d = mobius(v)``: ``phi_i = sum_{T containing i} d[T] / |T|``;
    ``O(2**n n)``. ``v[0]`` is ignored (taken as 0).
    """
    v = np.asarray(v, dtype=float).copy()
    v[0] = 0.0
    d = mobius_transform(v)
    n = int(np.log2(len(v)))
    sizes = _popcount(np.arange(len(v)))
    per_member = np.divide(d, sizes, out=np.zeros_like(d), where=sizes > 0)
    idx = np.arange(len(v))
    return np.array([per_member[(idx >> i) & 1 == 1].sum() for i in range(n)])


class ShapleyAttribution:
    """Exact Shapley attribution with the coalition characteristic function (module docstring).

    Parameters
    ----------
    dense_max_channels : int, default 20
        Up to this many channels, build ``v`` on all ``2**n`` subsets (exposed as
        ``characteristic_``) and solve with :func:`shapley_values`; above it, use the dividend
        formula on the observed channel sets only.

    Attributes
    ----------
    params_ : dict
        ``n_channels``, ``n_channel_sets``, ``method``, ``characteristic``.
    credits_ : pandas.DataFrame
        ``channel`` + one column per measure; non-negative, each column sums to the total.
    characteristic_ : pandas.DataFrame or None
        ``v(S)`` per measure, index = coalitions as tuples of channel labels (dense case only).
    """

    characteristic = "v(S) = measure of converting journeys whose channel set is a subset of S"

    def __init__(self, *, dense_max_channels: int = 20) -> None:
        self.dense_max_channels = dense_max_channels

    def __repr__(self) -> str:
        if not hasattr(self, "params_"):
            return "<ShapleyAttribution: not fitted>"
        return (
            f"<ShapleyAttribution: {self.params_['n_channels']} channels, "
            f"{self.params_['n_channel_sets']} observed channel sets, {self.params_['method']}>"
        )

    def fit(self, paths: pd.DataFrame, *, tokens: Tokens | None = None) -> ShapleyAttribution:
        """Aggregate converting paths to channel sets and compute exact Shapley values.

        ``tokens``: ``tokenize(paths["path"])`` when the caller already has it (saves the split).
        """
        validate_path_table(paths)
        measures = measures_of(paths)
        is_conv = paths["conversions"].to_numpy() > 0
        conv = paths[is_conv]
        if len(conv):
            all_channels, codes, _, lengths = tokens if tokens is not None else tokenize(paths["path"])
            if len(all_channels) > 62:
                raise ValueError("at most 62 channels (bit masks are int64)")
            bits = np.left_shift(np.int64(1), codes.astype(np.int64))
            masks = np.bitwise_or.reduceat(bits, np.cumsum(lengths) - lengths)[is_conv]
            # keep only channels seen in converting journeys, renumbered densely
            used = np.flatnonzero(np.bitwise_or.reduce(masks) >> np.arange(len(all_channels)) & 1)
            channels = [all_channels[i] for i in used]
            remapped = np.zeros_like(masks)
            for new_bit, old_bit in enumerate(used):
                remapped |= ((masks >> old_bit) & 1) << new_bit
            masks = remapped
        else:
            channels, masks = [], np.array([], dtype=np.int64)
        n = len(channels)
        by_set = pd.DataFrame({"mask": masks, **{m: conv[m].to_numpy(float) for m in measures}})
        by_set = by_set.groupby("mask", sort=True)[measures].sum()
        credits = pd.DataFrame({"channel": label_array(channels)})
        self.characteristic_ = None
        if 0 < n <= self.dense_max_channels:
            full = np.arange(1 << n)
            chars = {}
            for m in measures:
                dividends = np.zeros(1 << n)
                dividends[by_set.index.to_numpy()] = by_set[m].to_numpy()
                v = zeta_transform(dividends)
                chars[m] = v
                credits[m] = shapley_values(v)
            # a coalition is the tuple of its channels: names are data, never joined into one string
            labels = [tuple(c for i, c in enumerate(channels) if s >> i & 1) for s in full]
            index = pd.Index(label_array(labels), dtype=object, name="coalition", tupleize_cols=False)
            self.characteristic_ = pd.DataFrame(chars, index=index)
            method = "dense zeta/Möbius over all subsets"
        else:
            sizes = _popcount(by_set.index.to_numpy())
            for m in measures:
                per_member = by_set[m].to_numpy() / sizes
                credits[m] = [
                    per_member[(by_set.index.to_numpy() >> i) & 1 == 1].sum() for i in range(n)
                ]
            method = "dividend formula over observed channel sets"
        self.credits_ = credits
        self.params_ = {
            "n_channels": n,
            "n_channel_sets": int(len(by_set)),
            "method": method,
            "characteristic": self.characteristic,
        }
        return self
