"""First-order Markov removal-effect attribution, solved exactly (no simulation).

Model
-----
States: ``(start)``, one per channel, and the absorbing ``(conversion)`` and ``(null)``. Each journey
is the walk ``(start) -> c1 -> ... -> ck -> (conversion)|(null)`` after consecutive repeats of a channel
are collapsed (``(a, a, b)`` becomes ``(a, b)``; a self-loop would only change the time spent in a state,
never where the walk ends). Transition counts are weighted by the number of journeys with the path;
transition probabilities are row-normalised counts (the maximum-likelihood estimate).

With ``Q`` the transient-to-transient block (start + channels) and ``r`` the one-step probabilities of
conversion, the absorption probabilities solve ``(I - Q) x = r`` and ``P = x[start]``. It equals the
observed conversion rate exactly (flow conservation), which the tests check.

Removing channel ``c`` redirects every transition into ``c`` to ``(null)`` (row ``c`` of ``Q`` and
``r[c]`` set to zero). Removal effect ``RE_c = 1 - P_without_c / P``.

Credit convention: ``credit_c = total x RE_c / sum(RE)``, per measure. For ``conversions`` the reward
of absorbing into ``(conversion)`` is 1. For ``value`` (and other measures) the same chain is solved
with reward ``r_m[i] = (measure of journeys converting from state i) / (transitions out of i)``, i.e.
the probability of converting from ``i`` times the mean measure per conversion from ``i``; the
expected reward from start equals the observed measure per journey. ``RE`` for that measure uses the
expected reward instead of ``P``. This keeps value credit a property of the chain (not a per-journey
reallocation) while letting channels that precede large orders earn more value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crmlib.i18n import N_
from crmlib.roi.paths import Tokens, label_array, measures_of, tokenize, validate_path_table

__all__ = ["MarkovAttribution", "START", "CONVERSION", "NULL"]

# the chain's own states, drawn as tick labels beside the channels: marked for the catalog
START, CONVERSION, NULL = N_("(start)"), N_("(conversion)"), N_("(null)")


class MarkovAttribution:
    """Exact first-order Markov removal-effect attribution.

    Parameters
    ----------
    collapse : bool, default True
        Collapse consecutive repeats of a channel before counting transitions.

    Attributes
    ----------
    params_ : dict
        ``conversion_probability`` (P from start), ``n_journeys``, ``n_states``, ``convention``.
    transition_matrix_ : pandas.DataFrame
        Row-stochastic matrix, rows ``(start)`` + channels, columns channels + ``(conversion)``,
        ``(null)``.
    removal_effects_ : pandas.DataFrame
        Index channel; one column per measure (``conversions`` = the classic removal effect).
    credits_ : pandas.DataFrame
        ``channel`` + one column per measure; each column sums to the observed total.
    """

    convention = N_("credit = total x RE / sum(RE); RE_c = 1 - P(without c)/P; removal redirects c to null")

    def __init__(self, *, collapse: bool = True) -> None:
        self.collapse = collapse

    def __repr__(self) -> str:
        if not hasattr(self, "params_"):
            return "<MarkovAttribution: not fitted>"
        p = self.params_
        return (
            f"<MarkovAttribution: fitted on {p['n_journeys']:.0f} journeys, {p['n_states']} channels, "
            f"P(conversion)={p['conversion_probability']:.4f}>"
        )

    def fit(self, paths: pd.DataFrame, *, tokens: Tokens | None = None) -> MarkovAttribution:
        """Count transitions in ``paths`` (a path table) and solve the removal effects.

        ``tokens``: ``tokenize(paths["path"])`` when the caller already has it (saves the split).
        """
        validate_path_table(paths)
        measures = measures_of(paths)
        channels, flat, path_of_touch = _encode(paths["path"], collapse=self.collapse, tokens=tokens)
        k = len(channels)
        flat = flat + 1  # 0 = start
        conv_col, null_col = k + 1, k + 2
        weight = (paths["conversions"] + paths["nulls"]).to_numpy(float)
        lengths = np.bincount(path_of_touch, minlength=len(paths))
        # previous state of every touch: start for the first touch of a path
        prev = np.empty_like(flat)
        if len(flat):
            prev[1:] = flat[:-1]
        firsts = np.cumsum(lengths) - lengths
        prev[firsts] = 0
        # columns: start (never a target), channels, conversion, null
        width = k + 3
        last = flat[np.cumsum(lengths) - 1]
        counts = (
            np.bincount(prev * width + flat, weights=weight[path_of_touch], minlength=(k + 1) * width)
            + np.bincount(last * width + conv_col, weights=paths["conversions"].to_numpy(float), minlength=(k + 1) * width)
            + np.bincount(last * width + null_col, weights=paths["nulls"].to_numpy(float), minlength=(k + 1) * width)
        ).reshape(k + 1, width)
        out_total = counts.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            probs = np.where(out_total[:, None] > 0, counts / out_total[:, None], 0.0)
        q = probs[:, : k + 1]
        rewards = {}
        for m in measures:
            if m == "conversions":
                rewards[m] = probs[:, conv_col]
            else:
                r = np.bincount(last, weights=paths[m].to_numpy(float), minlength=k + 1)
                rewards[m] = np.where(out_total > 0, r / np.where(out_total > 0, out_total, 1), 0.0)
        base = {m: _absorb(q, r)[0] for m, r in rewards.items()}
        effects = np.zeros((k, len(measures)))
        rhs = np.column_stack([rewards[m] for m in measures])
        base_vec = np.array([base[m] for m in measures])
        for i in range(1, k + 1):
            q_wo = q.copy()
            q_wo[i, :] = 0.0
            r_wo = rhs.copy()
            r_wo[i, :] = 0.0
            without = _absorb(q_wo, r_wo)[0]
            effects[i - 1] = np.where(base_vec > 0, 1.0 - without / np.where(base_vec > 0, base_vec, 1.0), 0.0)
        removal = pd.DataFrame(effects, index=_index(channels, name="channel"), columns=measures)
        credits = pd.DataFrame({"channel": label_array(channels)})
        for m in measures:
            total = float(paths[m].sum())
            re = removal[m].to_numpy(float)
            credits[m] = total * re / re.sum() if re.sum() > 0 else np.zeros(k)
        rows, cols = _index([START, *channels]), _index([*channels, CONVERSION, NULL])
        self.transition_matrix_ = pd.DataFrame(probs[:, 1:], index=rows, columns=cols)
        self.transition_counts_ = pd.DataFrame(counts[:, 1:], index=rows, columns=cols)
        self.removal_effects_ = removal
        self.credits_ = credits
        n = float(weight.sum())
        self.params_ = {
            "conversion_probability": float(base["conversions"]),
            "observed_conversion_rate": float(paths["conversions"].sum() / n) if n else float("nan"),
            "n_journeys": n,
            "n_states": k,
            "collapse_repeats": self.collapse,
            "convention": self.convention,
        }
        return self


def _index(labels: list, name: str | None = None) -> pd.Index:
    """An index of step labels; ``(channel, campaign_id)`` pairs stay pairs instead of becoming a MultiIndex."""
    return pd.Index(label_array(labels), dtype=object, name=name, tupleize_cols=False)


def _encode(paths: pd.Series, *, collapse: bool, tokens: Tokens | None = None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Channel codes of every touch (consecutive repeats dropped when ``collapse``) and its path row."""
    channels, codes, row, _ = tokens if tokens is not None else tokenize(paths)
    if collapse and len(codes):
        keep = np.ones(len(codes), dtype=bool)
        keep[1:] = (codes[1:] != codes[:-1]) | (row[1:] != row[:-1])
        codes, row = codes[keep], row[keep]
    return list(channels), codes.astype(np.int64), row


def _absorb(q: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Solve ``(I - Q) x = r`` (expected absorbed reward from each transient state)."""
    a = np.eye(len(q)) - q
    return np.linalg.solve(a, r)
