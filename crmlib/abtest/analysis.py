"""From per-arm sufficient statistics to results, verdicts, guardrails and power (pure pandas/numpy).

This is the engine-free half of the stage: :func:`analyze` takes the long table produced by
:func:`crmlib.abtest.metrics.sufficient_statistics` and the ``ab_tests`` params section, and runs every
comparison of every experiment at once (vectorized per metric type).

Decision rules (documented here, repeated in the ``method`` / ``reason`` columns)
-------------------------------------------------------------------------------
* **SRM gate**: chi-square of units per variant against the designed ``weights`` (equal by default);
  p < 0.001 marks every row of the experiment ``blocked: SRM`` and no verdict is given.
* **Estimate**: Welch t (Satterthwaite df), unpooled SE; for conversion / revenue / orders the
  CUPED-adjusted estimate (pooled θ, pre-period = same window before assignment) when ``cuped=True``
  (default), with the unadjusted estimate and the pre-period balance p-value in ``*_unadjusted`` /
  ``balance_p_value`` columns; revenue per session by the delta method at the unit level.
* **Peeking-safe verdict**: the verdict uses the always-valid p-value of the asymptotic confidence
  sequence (:mod:`crmlib.abtest.sequential`, tuning ``sequential_tuning``), adjusted within families.
  The fixed-horizon ``p_value`` is always stored in ``ab_results`` but shown in the verdict table only
  once every arm has reached ``planned_n_per_arm``.
* **Families** (per experiment; ``correction`` = Holm default, or BH): the primary metric alone (over
  treatment arms); the secondary metrics together; metrics in no role ("exploratory") together.
  Guardrails are not corrected: each is a one-sided non-inferiority test with a relative margin and
  shipping needs all of them (intersection-union test).
* **Guardrail status**: ``pass`` when the confidence-sequence lower bound of the lift is above
  ``-margin x control mean``; ``fail`` when its upper bound is below 0 (harm shown); else
  ``inconclusive``.
* **Experiment verdict**: ``ship`` (a treatment arm significantly better on the primary metric and
  every guardrail passes), ``do not ship`` (a guardrail fails for the best arm, or every treatment
  arm is significantly worse on the primary metric), else ``inconclusive``; each with a reason.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crmlib.i18n import N_, _, translate_filled
from crmlib.params import experiment_defaults
from crmlib.present import fmt_count, fmt_percent, fmt_pvalue
from crmlib.status import CannotCompute

from .bayes import LABEL as BAYES_LABEL
from .bayes import prob_beat_control
from .cuped import cuped_test
from .multiple import adjust_grouped, reject
from .power import achieved_power, mde, sample_size_per_arm
from .ratio import ratio_test
from .sequential import confidence_sequence
from .srm import SRM_THRESHOLD, srm_test
from .stats import TwoSampleResult, non_inferiority_test, welch_test

__all__ = [
    "ABAnalysis", "analyze", "cumulative_comparisons", "resolve_controls", "compare_arms", "RESULT_COLUMNS",
    "experiment_config", "require_comparable", "method_text", "SEQUENTIAL_METHOD", "WINSORIZE_METHOD",
]

RESULT_COLUMNS = [
    "experiment_id", "metric", "variant", "n", "mean", "control_mean", "abs_lift", "abs_ci_low", "abs_ci_high",
    "rel_lift", "rel_ci_low", "rel_ci_high", "p_value", "p_adjusted", "p_value_sequential", "srm_p_value",
    "verdict", "method",
]


class ABAnalysis:
    """Container of the stage's tables (all pandas DataFrames).

    Attributes
    ----------
    results : one row per experiment x metric x variant (contract columns first, extras after)
    verdicts : one row per experiment
    guardrails : one row per experiment x guardrail x treatment variant
    power : one row per experiment x treatment variant (primary metric)
    srm : one row per experiment
    """

    def __init__(self, results, verdicts, guardrails, power, srm):
        self.results, self.verdicts, self.guardrails, self.power, self.srm = (
            results, verdicts, guardrails, power, srm)

    def __repr__(self) -> str:
        counts = self.verdicts["verdict"].value_counts().to_dict() if len(self.verdicts) else {}
        return f"ABAnalysis({len(self.verdicts)} experiments, {len(self.results)} result rows, verdicts={counts})"


def experiment_config(ab_params: dict, experiment_id: str) -> dict:
    """The validated params entry of one experiment; for one the params do not list (found only in the
    assignment log), the schema's defaults (:func:`crmlib.params.experiment_defaults`: equal weights)."""
    entry = next((e for e in ab_params["experiments"] if e["id"] == experiment_id), None)
    return entry if entry is not None else experiment_defaults(experiment_id)


def require_comparable(stats: pd.DataFrame, experiment_id: str, *, window_days: int | None = None,
                       as_of=None, weights: dict | None = None) -> None:
    """Raise :class:`~crmlib.status.CannotCompute` unless ``experiment_id`` has units in a control arm and
    at least one other arm.

    An experiment without units (listed in the params but absent from the assignment log, or with no
    outcome window closed yet), with every unit in one arm (a broken or filtered assignment), or - when
    its designed ``weights`` are given - without units in the designed control arm (a variant named
    control/holdout among the weights, else the first one; a unit flagged ``is_control`` also counts)
    has no lift to estimate. ``stats`` is the long sufficient-statistics table.
    """
    rows = stats[stats["experiment_id"] == experiment_id] if len(stats) else stats
    arms = rows.groupby(rows["variant"].astype(str))["n"].max() if len(rows) else pd.Series(dtype=float)
    arms = arms[arms > 0]
    if arms.empty:
        window = (_("a complete {days}-day outcome window").format(days=window_days) if window_days
                  else _("a complete outcome window"))
        by = _(" by {date}").format(date=pd.Timestamp(as_of).date()) if as_of is not None else ""
        raise CannotCompute(
            _("experiment {experiment!r} has no units with {window}{by}: it is missing from the assignment log, "
              "or every unit was assigned too recently. Wait for the windows to close, or check the experiment "
              "id.").format(experiment=experiment_id, window=window, by=by))
    if len(arms) == 1:
        variant, n = arms.index[0], int(arms.iloc[0])
        raise CannotCompute(
            _("experiment {experiment!r} has units in one arm only ({variant!r}, {n} units): a lift needs a "
              "control arm and at least one other arm. Check the assignment log (a broken split or a filtered "
              "export) and the variant names.").format(experiment=experiment_id, variant=variant, n=fmt_count(n)))
    if weights:
        designed = [v for v in weights if str(v).lower() in ("control", "holdout")] or [next(iter(weights))]
        flagged = rows["is_control"].fillna(False).astype(bool).any() if "is_control" in rows else False
        if not flagged and not set(map(str, designed)) & set(arms.index):
            observed = ", ".join(f"{v!r}: {int(n):,}" for v, n in arms.items())
            raise CannotCompute(
                _("experiment {experiment!r} has no units in its control arm {control!r} (designed weights "
                  "{weights}; units by arm {observed}): there is nothing to compare the other arms with. "
                  "Check the assignment log and the variant names.").format(
                    experiment=experiment_id, control=designed[0], weights=dict(weights), observed=observed))


def resolve_controls(stats: pd.DataFrame, ab_params: dict) -> dict[str, tuple[str, str]]:
    """Control variant per experiment and how it was chosen.

    Order: a variant flagged ``is_control``; else one named ``control`` or ``holdout`` (any case); else the first
    variant in the designed weights; else the alphabetically first variant.
    """
    pairs = stats[["experiment_id", "variant", "is_control"]].copy()
    pairs["variant"] = pairs["variant"].astype(str)
    pairs["flag"] = pairs["is_control"].fillna(False).astype(bool)
    arms = pairs.groupby(["experiment_id", "variant"], sort=True)["flag"].any().reset_index()
    flagged = arms[arms["flag"]]
    n_flagged = flagged.groupby("experiment_id").size()
    one_flag = flagged[flagged["experiment_id"].map(n_flagged) == 1].set_index("experiment_id")["variant"].to_dict()
    named = arms[arms["variant"].str.lower().isin(["control", "holdout"])]
    named = named.drop_duplicates("experiment_id").set_index("experiment_id")["variant"].to_dict()
    first = arms.groupby("experiment_id")["variant"].first().to_dict()
    variants_of = {}
    configured = {e["id"] for e in ab_params["experiments"]}
    if configured:
        sub = arms[arms["experiment_id"].isin(configured)]
        variants_of = sub.groupby("experiment_id")["variant"].agg(set).to_dict()
    out = {}
    for exp_id in first:
        weights = experiment_config(ab_params, exp_id)["weights"]
        if exp_id in one_flag:
            out[exp_id] = (one_flag[exp_id], "is_control flag")
        elif exp_id in named:
            out[exp_id] = (named[exp_id], f"variant named {named[exp_id]!r}")
        elif weights and next(iter(weights)) in variants_of.get(exp_id, set()):
            out[exp_id] = (next(iter(weights)), "first variant in params weights")
        else:
            out[exp_id] = (first[exp_id], "alphabetically first variant (no control flag)")
    return out


def _as_dict(df: pd.DataFrame, prefix: str, cols) -> dict:
    return {c: df[f"{prefix}{c}"].to_numpy(float) for c in cols}


def compare_arms(pairs: pd.DataFrame, *, alpha: float, test: str, cuped: bool,
                 relative_ci: str = "delta") -> pd.DataFrame:
    """Run every treatment-vs-control comparison in ``pairs`` (control columns prefixed ``c_``).

    Vectorized per metric type. Returns ``pairs`` with result columns added.
    """
    pieces = []
    for mtype, g in pairs.groupby("metric_type", sort=False):
        g = g.copy()
        if mtype == "ratio":
            keys = ("n", "sum_num", "sum_num2", "sum_den", "sum_den2", "sum_num_den")
            src = ("n", "sum_y", "sum_y2", "sum_den", "sum_den2", "sum_yden")
            t = {k: g[s].to_numpy(float) for k, s in zip(keys, src)}
            c = {k: g[f"c_{s}"].to_numpy(float) for k, s in zip(keys, src)}
            res = ratio_test(c, t, alpha=alpha, test=test)
            main, unadj = res, res
            theta = vr = bal = np.full(len(g), np.nan)
            cuped_used = np.zeros(len(g), bool)
            adj_method = res.method
        else:
            binary = mtype == "binary"
            unadj = welch_test(g["c_n"], g["c_sum_y"], g["c_sum_y2"], g["n"], g["sum_y"], g["sum_y2"],
                               alpha=alpha, test=test, binary=binary)
            main = unadj
            theta = vr = bal = np.full(len(g), np.nan)
            cuped_used = np.zeros(len(g), bool)
            adj_method = unadj.method
            if cuped:
                cols = ("n", "sum_y", "sum_y2", "sum_x", "sum_x2", "sum_xy")
                cr = cuped_test(_as_dict(g, "c_", cols), _as_dict(g, "", cols), alpha=alpha, test=test)
                # a covariate with no variance (nobody bought in the pre-period) cannot adjust anything
                cuped_used = np.isfinite(cr.adjusted.pvalue) & (np.abs(cr.theta) > 0)
                main = _select(cuped_used, cr.adjusted, unadj)
                theta, vr, bal = cr.theta, cr.variance_reduction, cr.balance.pvalue
                adj_method = cr.adjusted.method
        g["mean"] = unadj.mean_treatment
        g["control_mean"] = unadj.mean_control
        for col in ("abs_lift", "abs_ci_low", "abs_ci_high", "rel_lift", "rel_ci_low", "rel_ci_high", "se", "df",
                    "rel_se", "fieller_low", "fieller_high", "fieller_unbounded", "var_mean_control",
                    "var_mean_treatment", "statistic"):
            g[col] = np.asarray(getattr(main, col))
        g["p_value"] = np.asarray(main.pvalue)
        for col in ("abs_lift", "abs_ci_low", "abs_ci_high", "rel_lift", "rel_ci_low", "rel_ci_high"):
            g[f"{col}_unadjusted"] = np.asarray(getattr(unadj, col))
        g["p_value_unadjusted"] = np.asarray(unadj.pvalue)
        g["se_unadjusted"] = np.asarray(unadj.se)
        g["cuped_used"] = cuped_used
        g["cuped_theta"] = theta
        g["cuped_variance_reduction"] = vr
        g["balance_p_value"] = bal
        g["method"] = np.where(cuped_used, adj_method, unadj.method)
        if relative_ci == "fieller":
            ok = ~g["fieller_unbounded"].astype(bool)
            g.loc[ok, "rel_ci_low"] = g.loc[ok, "fieller_low"]
            g.loc[ok, "rel_ci_high"] = g.loc[ok, "fieller_high"]
            g["method"] = g["method"].where(~ok, g["method"].str.replace("rel CI delta method", N_("rel CI Fieller")))
        # the relative CI rests on its own SE (delta) and can disagree with the absolute p near alpha
        excl = (g["rel_ci_low"] > 0) | (g["rel_ci_high"] < 0)
        g["rel_ci_disagrees_with_p"] = np.isfinite(g["p_value"]) & (excl != (g["p_value"] < alpha))
        pieces.append(g)
    return pd.concat(pieces).sort_index() if pieces else pairs


def _select(mask, a: TwoSampleResult, b: TwoSampleResult) -> TwoSampleResult:
    """Element-wise choice between two results of the same shape (a where mask)."""
    vals = {}
    for name in ("statistic", "pvalue", "df", "n_control", "n_treatment", "mean_control", "mean_treatment",
                 "abs_lift", "se", "abs_ci_low", "abs_ci_high", "rel_lift", "rel_se", "rel_ci_low", "rel_ci_high",
                 "fieller_low", "fieller_high", "fieller_unbounded", "var_mean_control", "var_mean_treatment"):
        vals[name] = np.where(mask, getattr(a, name), getattr(b, name))
    return TwoSampleResult(**vals, alpha=a.alpha, method=a.method)


#: The parts of a ``method`` text that carry a setting, as templates (the setting is filled in as text).
SEQUENTIAL_METHOD = N_("sequential: asymptotic confidence sequence (tuning={tuning})")
WINSORIZE_METHOD = N_("revenue/orders capped at the pooled {q} quantile (quantile_cont, both arms)")
_METHOD_TEMPLATES = (SEQUENTIAL_METHOD, WINSORIZE_METHOD)


def method_text(method: str) -> str:
    """A stored ``method`` text (English, "; "-separated parts) in the report's language.

    Each part is a catalog message: fixed parts are translated as they are, parts with a setting
    (:data:`SEQUENTIAL_METHOD`, :data:`WINSORIZE_METHOD`) through their template. A part the catalog does
    not know stays as it is.
    """
    if not isinstance(method, str) or not method:
        return method
    parts = [translate_filled(part, _METHOD_TEMPLATES) for part in method.split("; ")]
    text = parts[0]
    for part in parts[1:]:
        text = _("{part}; {next_part}").format(part=text, next_part=part)
    return text


def _roles(cfg: dict) -> dict[str, str]:
    roles = {}
    for m in cfg["secondary_metrics"]:
        roles[m] = N_("secondary")
    for g in cfg["guardrails"]:
        roles[g["metric"]] = N_("guardrail")
    roles[cfg["primary_metric"]] = N_("primary")
    return roles


def analyze(
    stats: pd.DataFrame,
    ab_params: dict,
    *,
    cuped: bool = True,
    test: str = "welch",
    relative_ci: str = "delta",
) -> ABAnalysis:
    """Analyse every experiment in ``stats`` (whole-population rows; no segment column).

    Parameters
    ----------
    stats : DataFrame
        Long sufficient statistics from :func:`crmlib.abtest.metrics.sufficient_statistics`.
    ab_params : dict
        The validated ``ab_tests`` params section, every key present (:func:`crmlib.params.load_params`
        or :func:`crmlib.params.complete_params`): ``alpha``, ``correction``, ``sequential_tuning``,
        ``experiments``...
    cuped : bool
        Use the CUPED-adjusted estimate for mean metrics (unadjusted kept beside it).
    test : {"welch", "z"}
        Reference distribution of the fixed-horizon test.
    relative_ci : {"delta", "fieller"}
        Relative-lift CI in the contract columns: delta method (default) or Fieller where bounded
        (Fieller contains 0 exactly when the absolute test does not reject). Both are always in the
        table (``fieller_*`` columns); ``rel_ci_disagrees_with_p`` flags rows where the chosen relative
        CI and the absolute p-value disagree about significance.

    Returns
    -------
    ABAnalysis
    """
    ab = dict(ab_params)
    alpha = float(ab["alpha"])
    correction = ab["correction"]
    tuning = float(ab["sequential_tuning"])
    stats = stats.copy()
    stats["variant"] = stats["variant"].astype(str)
    controls = resolve_controls(stats, ab)
    stats["control_variant"] = stats["experiment_id"].map(lambda e: controls[e][0])
    stats["is_control_row"] = stats["variant"] == stats["control_variant"]

    # --- SRM per experiment -----------------------------------------------------------------------
    srm = _srm_table(stats, ab, controls)

    # --- all treatment-vs-control comparisons at once ------------------------------------------------
    ctrl = stats[stats["is_control_row"]]
    ctrl_cols = ["n", "sum_y", "sum_y2", "sum_x", "sum_x2", "sum_xy", "sum_den", "sum_den2", "sum_yden"]
    ctrl = ctrl[["experiment_id", "metric"] + ctrl_cols].rename(columns={c: f"c_{c}" for c in ctrl_cols})
    treat = stats[~stats["is_control_row"]]
    pairs = treat.merge(ctrl, on=["experiment_id", "metric"], how="left").reset_index(drop=True)
    if relative_ci not in ("delta", "fieller"):
        raise ValueError(f"relative_ci must be 'delta' or 'fieller', got {relative_ci!r}")
    pairs = compare_arms(pairs, alpha=alpha, test=test, cuped=cuped, relative_ci=relative_ci)
    if len(pairs):
        lo, hi, pseq = confidence_sequence(pairs["abs_lift"], pairs["se"], pairs["n"] + pairs["c_n"], alpha=alpha,
                                           tuning=tuning)
        pairs["seq_ci_low"], pairs["seq_ci_high"], pairs["p_value_sequential"] = lo, hi, pseq
        # the interval the verdict rests on, shown beside it: the absolute confidence sequence expressed
        # relative to the control mean, so it excludes zero exactly when the verdict calls a difference
        # (a delta-method relative interval, wider by the control mean's own noise, could cross zero then)
        with np.errstate(divide="ignore", invalid="ignore"):
            a, b = lo / pairs["control_mean"], hi / pairs["control_mean"]
        pairs["seq_rel_ci_low"], pairs["seq_rel_ci_high"] = np.minimum(a, b), np.maximum(a, b)
        pairs["method"] = pairs["method"] + "; " + SEQUENTIAL_METHOD.format(tuning=f"{tuning:g}")

    # --- roles, families and corrections ------------------------------------------------------------
    cfgs = {e: experiment_config(ab, e) for e in stats["experiment_id"].unique()}
    pairs["role"] = [_roles(cfgs[e]).get(m, N_("exploratory")) for e, m in zip(pairs["experiment_id"], pairs["metric"])]
    family = pairs["experiment_id"].astype(str) + "\x1f" + pairs["role"]
    guard = (pairs["role"] == "guardrail").to_numpy()
    pairs["p_adjusted"] = np.where(guard, pairs["p_value"], adjust_grouped(pairs["p_value"], family, correction))
    pairs["p_sequential_adjusted"] = np.where(
        guard, pairs["p_value_sequential"], adjust_grouped(pairs["p_value_sequential"], family, correction))
    pairs["correction"] = np.where(pairs["role"] == "guardrail", "none (intersection-union)", correction)

    # guardrail non-inferiority (fixed-horizon one-sided p, and the peeking-safe CS rule)
    margins = [next((g["margin"] for g in cfgs[e]["guardrails"] if g["metric"] == m), np.nan)
               for e, m in zip(pairs["experiment_id"], pairs["metric"])]
    pairs["ni_margin"] = margins
    res_like = TwoSampleResult(
        statistic=pairs["statistic"].to_numpy(), pvalue=pairs["p_value"].to_numpy(), df=pairs["df"].to_numpy(),
        n_control=pairs["c_n"].to_numpy(), n_treatment=pairs["n"].to_numpy(),
        mean_control=pairs["control_mean"].to_numpy(), mean_treatment=pairs["mean"].to_numpy(),
        abs_lift=pairs["abs_lift"].to_numpy(), se=pairs["se"].to_numpy(), abs_ci_low=None, abs_ci_high=None,
        rel_lift=None, rel_se=None, rel_ci_low=None, rel_ci_high=None, fieller_low=None, fieller_high=None,
        fieller_unbounded=None, var_mean_control=None, var_mean_treatment=None, alpha=alpha)
    ni = non_inferiority_test(res_like, pairs["ni_margin"].to_numpy(float), alpha=alpha)
    pairs["ni_margin_abs"] = ni["margin_abs"]
    pairs["ni_p_value"] = ni["pvalue"]
    pairs["guardrail_status"] = np.where(
        pairs["role"] != "guardrail", "",
        np.where(pairs["seq_ci_low"] > -pairs["ni_margin_abs"], "pass",
                 np.where(pairs["seq_ci_high"] < 0, "fail", "inconclusive")))

    # --- row verdicts -----------------------------------------------------------------------------
    blocked = dict(zip(srm["experiment_id"], srm["blocked"]))
    sig = reject(pairs["p_sequential_adjusted"], alpha)
    row_verdict = np.where(~np.isfinite(pairs["p_value"]), N_("unavailable"),
                           np.where(sig & (pairs["abs_lift"] > 0), N_("better"),
                                    np.where(sig & (pairs["abs_lift"] < 0), N_("worse"), N_("inconclusive"))))
    guardrail_verdict = pairs["guardrail_status"].map({"pass": N_("guardrail pass"), "fail": N_("guardrail fail"),
                                                       "inconclusive": N_("guardrail inconclusive")})
    row_verdict = np.where(pairs["role"] == "guardrail",
                           np.where(np.isfinite(pairs["p_value"]), guardrail_verdict, "unavailable"), row_verdict)
    pairs["verdict"] = np.where(pairs["experiment_id"].map(blocked).fillna(False).astype(bool), N_("blocked: SRM"),
                                row_verdict)

    srm_p = dict(zip(srm["experiment_id"], srm["srm_p_value"]))
    pairs["srm_p_value"] = pairs["experiment_id"].map(srm_p)
    planned = {e: c["planned_n_per_arm"] for e, c in cfgs.items()}
    pairs["planned_n_per_arm"] = pairs["experiment_id"].map(planned).astype(float)
    pairs["planned_n_reached"] = (np.minimum(pairs["n"], pairs["c_n"]) >= pairs["planned_n_per_arm"]).fillna(False)
    pairs["is_control"] = False

    # control rows: n and mean of the control arm, no lift
    crow = stats[stats["is_control_row"]].copy()
    if len(crow):
        m, _ = _means(crow)
        crow["mean"], crow["control_mean"] = m, m
        crow["verdict"] = np.where(crow["experiment_id"].map(blocked).fillna(False).astype(bool), "blocked: SRM",
                                   N_("control"))
        crow["method"] = "control arm (reference)"
        crow["srm_p_value"] = crow["experiment_id"].map(srm_p)
        crow["role"] = [_roles(cfgs[e]).get(mm, "exploratory") for e, mm in zip(crow["experiment_id"],
                                                                                crow["metric"])]
        crow["is_control"] = True
    results = pd.concat([pairs, crow], ignore_index=True)
    for c in RESULT_COLUMNS:
        if c not in results:
            results[c] = np.nan
    extra = ["is_control", "role", "correction", "p_sequential_adjusted", "seq_ci_low", "seq_ci_high",
             "seq_rel_ci_low", "seq_rel_ci_high", "se", "df",
             "fieller_low", "fieller_high", "fieller_unbounded", "rel_ci_disagrees_with_p", "abs_lift_unadjusted",
             "abs_ci_low_unadjusted", "abs_ci_high_unadjusted", "rel_lift_unadjusted", "rel_ci_low_unadjusted",
             "rel_ci_high_unadjusted",
             "p_value_unadjusted", "se_unadjusted", "cuped_used", "cuped_theta", "cuped_variance_reduction",
             "balance_p_value", "ni_margin", "ni_margin_abs", "ni_p_value", "guardrail_status", "planned_n_per_arm",
             "planned_n_reached"]
    extra = [c for c in extra if c in results]
    results = results[RESULT_COLUMNS + extra]
    results["n"] = results["n"].astype("int64")
    order = {m: i for i, m in enumerate(["conversion", "revenue", "orders", "revenue_per_session"])}
    results = results.assign(_m=results["metric"].map(order).fillna(99), _c=~results["is_control"].astype(bool))
    results = results.sort_values(["experiment_id", "_m", "metric", "_c", "variant"]).drop(columns=["_m", "_c"])
    results = results.reset_index(drop=True)

    guardrails = _guardrail_table(results)
    verdicts = _verdict_table(results, srm, cfgs, stats, alpha)
    power = _power_table(results, cfgs, alpha)
    return ABAnalysis(results, verdicts, guardrails, power, srm)


def _srm_table(stats: pd.DataFrame, ab: dict, controls: dict) -> pd.DataFrame:
    """SRM chi-square per experiment against the designed weights, all experiments at once."""
    cols = ["experiment_id", "srm_p_value", "srm_chi2", "max_share_deviation", "blocked", "srm_reason",
            "designed_weights", "observed_n", "control_variant", "control_rule"]
    if stats.empty:
        return pd.DataFrame(columns=cols)
    arms = stats[stats["metric"] == stats["metric"].iloc[0]][["experiment_id", "variant", "n"]].copy()
    arms["n"] = arms["n"].astype(float)
    arms["w"] = 1.0
    unknown: dict[str, list] = {}
    extra = []
    for e in ab["experiments"]:
        weights = e["weights"]
        if not weights or e["id"] not in controls:
            continue
        mask = arms["experiment_id"] == e["id"]
        seen = set(arms.loc[mask, "variant"])
        unknown[e["id"]] = sorted(seen - set(weights))
        arms.loc[mask, "w"] = arms.loc[mask, "variant"].map(lambda v: float(weights.get(v, 0.0)))
        extra += [{"experiment_id": e["id"], "variant": v, "n": 0.0, "w": float(w)}
                  for v, w in weights.items() if v not in seen]
    if extra:
        arms = pd.concat([arms, pd.DataFrame(extra)], ignore_index=True)
    arms = arms[arms["w"] > 0].sort_values(["experiment_id", "variant"]).reset_index(drop=True)
    share = arms["w"] / arms.groupby("experiment_id")["w"].transform("sum")
    rows = []
    for exp_id, g in arms.groupby("experiment_id", sort=True):
        if len(g) > 1:
            test = srm_test(g["n"].to_numpy(), g["w"].to_numpy())
            chi2, p, dev = float(test.statistic), float(test.pvalue), float(test.max_share_deviation)
        else:  # one arm has no split to check (such an experiment is left out before the analysis)
            chi2, p, dev = 0.0, np.nan, 0.0
        rows.append({"experiment_id": exp_id, "srm_chi2": chi2, "max_share_deviation": dev, "srm_p_value": p})
    per = pd.DataFrame(rows, columns=["experiment_id", "srm_chi2", "max_share_deviation", "srm_p_value"])
    obs_str: dict[str, dict] = {}
    w_str: dict[str, dict] = {}
    for e, v, n, w, sh in zip(arms["experiment_id"], arms["variant"], arms["n"], arms["w"], share):
        obs_str.setdefault(e, {})[v] = int(n)
        w_str.setdefault(e, {})[v] = round(float(sh), 4)
    blocked, reasons = [], []
    for e, p in zip(per["experiment_id"], per["srm_p_value"]):
        unk = unknown.get(e, [])
        b = bool(p < SRM_THRESHOLD) or bool(unk)
        blocked.append(b)
        observed = ", ".join(f"{v} {fmt_count(n)}" for v, n in obs_str[e].items())
        designed = ", ".join(f"{v} {fmt_percent(w)}" for v, w in w_str[e].items())
        reasons.append(_("variants {names} are not in the designed weights").format(names=_names(unk)) if unk else
                       _("the split of users between the arms differs from the design (sample-ratio check p {p}; "
                         "users {observed}; designed {designed})").format(p=_p_text(p), observed=observed,
                                                                          designed=designed) if b else "")
    per["blocked"], per["srm_reason"] = blocked, reasons
    per["designed_weights"] = per["experiment_id"].map(lambda e: str(w_str[e]))
    per["observed_n"] = per["experiment_id"].map(lambda e: str(obs_str[e]))
    per["control_variant"] = per["experiment_id"].map(lambda e: controls[e][0])
    per["control_rule"] = per["experiment_id"].map(lambda e: controls[e][1])
    return per[cols]


def _means(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = rows["metric_type"].to_numpy() == "ratio"
        m = np.where(ratio, rows["sum_y"] / rows["sum_den"], rows["sum_y"] / rows["n"])
    return m, ratio


def _guardrail_table(results: pd.DataFrame) -> pd.DataFrame:
    g = results[(results["role"] == "guardrail") & ~results["is_control"].astype(bool)]
    cols = ["experiment_id", "metric", "variant", "n", "mean", "control_mean", "rel_lift", "ni_margin",
            "ni_margin_abs", "abs_lift", "seq_ci_low", "seq_ci_high", "ni_p_value", "guardrail_status", "verdict"]
    out = g[cols].rename(columns={"ni_margin": "margin_relative", "ni_margin_abs": "margin_abs",
                                  "ni_p_value": "ni_p_value_fixed_horizon"}).reset_index(drop=True)
    out["rule"] = "; ".join([N_("pass: sequential lower bound > -margin x control mean"),
                             N_("fail: sequential upper bound < 0")])
    return out


#: An inconclusive experiment whose observed lift would need more than this many times its current
#: sample per arm to confirm is not worth running on: the advice is to stop.
STOP_FACTOR = 4.0


def _fmt_pct(x: float) -> str:
    return _("n/a") if not np.isfinite(x) else fmt_percent(x, signed=True)


def _p_text(p: float) -> str:
    """``= 0.012`` or ``< 0.001``: a p-value after "p" in a sentence."""
    text = fmt_pvalue(p, na=_("n/a"))
    return text if text.startswith("<") else f"= {text}"


def _names(metrics) -> str:
    return ", ".join(str(m) for m in metrics)


def _more_users(b: dict, n_control: float | None, alpha: float) -> tuple[float, float]:
    """Units per arm needed to confirm the observed lift (80 % power, fixed-horizon planning formula: the
    always-valid test needs at least this many) and how many more that is than the smaller arm has now;
    the planned sample when it is larger. ``(nan, nan)`` when the lift is zero or not estimable."""
    n_t = float(b["n"])
    n_c = float(n_control) if n_control is not None and np.isfinite(n_control) else n_t
    se, delta = float(b["se_unadjusted"]), abs(float(b["abs_lift"]))
    if not (np.isfinite(se) and se > 0 and np.isfinite(delta) and delta > 0):
        return np.nan, np.nan
    var_unit = se**2 / (1 / n_c + 1 / n_t)
    needed = float(sample_size_per_arm(var_unit, var_unit, delta, alpha=alpha))
    planned = float(b.get("planned_n_per_arm", np.nan))
    if np.isfinite(planned):
        needed = max(needed, planned)
    return needed, max(needed - min(n_c, n_t), 0.0)


def _verdict_table(results, srm, cfgs, stats, alpha) -> pd.DataFrame:
    """One row per experiment. ``reason`` quotes the interval the verdict uses (the always-valid one,
    ``seq_rel_ci_*``); the fixed-horizon interval is kept beside it (``rel_ci_*_fixed_horizon``) and
    labelled so on the page. ``next_step`` says what to do; for ``inconclusive`` it names the users per
    arm still needed (``n_more_per_arm``) or says to stop."""
    cols = ["experiment_id", "verdict", "variant", "reason", "next_step", "action", "primary_metric", "control_variant",
            "best_variant", "n_control", "n_treatment", "rel_lift", "seq_rel_ci_low", "seq_rel_ci_high",
            "rel_ci_low_fixed_horizon", "rel_ci_high_fixed_horizon", "p_value_sequential", "planned_n_reached",
            "p_value_fixed_horizon", "fixed_horizon_note", "guardrails_harmed", "guardrails_unclear",
            "guardrails_checked", "n_needed_per_arm", "n_more_per_arm", "srm_p_value", "prob_beat_control",
            "prob_beat_control_note"]
    treat = results[~results["is_control"].astype(bool)]
    primary = treat["experiment_id"].map({e: c["primary_metric"] for e, c in cfgs.items()})
    prim = treat[(treat["metric"] == primary) & np.isfinite(treat["p_value"].astype(float))]
    # best treatment arm on the primary metric (largest relative lift), all experiments at once
    best = prim.sort_values("rel_lift", ascending=False, kind="mergesort").drop_duplicates("experiment_id")
    best = best.set_index("experiment_id")
    worse_all = (prim["verdict"] == "worse").groupby(prim["experiment_id"]).all().to_dict()
    gr = treat[treat["role"] == "guardrail"].merge(
        best["variant"].rename("best_variant").reset_index(), on="experiment_id")
    gr = gr[gr["variant"] == gr["best_variant"]]
    harmed = gr[gr["guardrail_status"] == "fail"].groupby("experiment_id")["metric"].agg(list).to_dict()
    pend = gr[gr["guardrail_status"] != "pass"].groupby("experiment_id")["metric"].agg(list).to_dict()
    ctrl_n = results[results["is_control"].astype(bool)].set_index(["experiment_id", "metric"])["n"].to_dict()
    conv = stats[stats["metric"] == "conversion"].set_index(["experiment_id", "variant"])[["n", "sum_y"]]
    conv = conv.to_dict("index")
    bayes_inputs: list[tuple] = []
    keep = ["variant", "rel_lift", "rel_ci_low", "rel_ci_high", "seq_rel_ci_low", "seq_rel_ci_high", "abs_ci_low",
            "abs_ci_high", "control_mean",
            "p_sequential_adjusted", "verdict", "planned_n_reached", "n", "p_adjusted", "abs_lift", "se_unadjusted",
            "planned_n_per_arm"]
    best_rows = best[[c for c in keep if c in best.columns]].to_dict("index")
    rows = []
    for s in srm.to_dict("records"):
        e = s["experiment_id"]
        pm = cfgs[e]["primary_metric"]
        base = {"experiment_id": e, "primary_metric": pm, "control_variant": s["control_variant"],
                "srm_p_value": s["srm_p_value"]}
        if s["blocked"]:
            rows.append({**base, "verdict": "blocked: SRM", "variant": None,
                         "reason": _("{srm}, so no effect estimate can be trusted").format(srm=s["srm_reason"]),
                         "action": "fix the split",
                         "next_step": _("fix the assignment or the logging, then restart the experiment")})
            continue
        b = best_rows.get(e)
        if b is None:
            rows.append({**base, "verdict": "inconclusive", "variant": None,
                         "reason": _("the primary metric {metric} could not be measured for this experiment").format(
                             metric=pm),
                         "next_step": _("check that the primary metric is recorded for both arms"),
                         "action": "check the data"})
            continue
        failed, pending = harmed.get(e, []), pend.get(e, [])
        checked = list(cfgs[e]["guardrails"])
        lift = _("{metric} {variant} vs {control}: {lift} (always-valid interval {low} to {high})").format(
            metric=pm, variant=b["variant"], control=s["control_variant"], lift=_fmt_pct(b["rel_lift"]),
            low=_fmt_pct(b["seq_rel_ci_low"]), high=_fmt_pct(b["seq_rel_ci_high"]))
        needed, more = _more_users(b, ctrl_n.get((e, pm)), alpha)
        if failed:
            verdict = N_("do not ship")
            reason = _("guardrail {names} harmed; {lift}").format(names=_names(failed), lift=lift)
            step = _("do not ship; look into why {names} got worse").format(names=_names(failed))
            action = "do not ship"
        elif b["verdict"] == "better" and not pending:
            verdict = N_("ship")
            harm = _("no guardrail harmed") if checked else _("no guardrail set")
            reason = _("{lift}; {harm}").format(lift=lift, harm=harm)
            step = _("ship {variant}").format(variant=b["variant"])
            action = "ship"
        elif b["verdict"] == "better":
            verdict = "inconclusive"
            reason = _("{lift}, but guardrail {names} not yet shown unharmed").format(lift=lift,
                                                                                      names=_names(pending))
            step = _("keep running until guardrail {names} is shown unharmed").format(names=_names(pending))
            action = "keep running"
        elif worse_all.get(e, False):
            verdict = "do not ship"
            reason = _("{lift}: significantly worse").format(lift=lift)
            step = _("do not ship; stop the experiment")
            action = "do not ship"
        else:
            verdict = "inconclusive"
            reason = _("{lift}: the interval includes no change").format(lift=lift)
            n_now = min(float(b["n"]), float(ctrl_n.get((e, pm)) or b["n"]))
            if not np.isfinite(more):
                step = _("stop: no difference between the arms; treat the change as having no effect")
                action = "stop"
            elif needed > STOP_FACTOR * n_now:
                step = _("stop: confirming a lift this small would take about {n} users per arm, "
                         "{x} times as many as now; treat the change as having no detectable effect").format(
                    n=fmt_count(needed), x=fmt_count(needed / n_now))
                action = "stop"
            else:
                step = _("keep running: about {n} more users per arm are needed to confirm a lift this "
                         "size").format(n=fmt_count(more))
                action = "keep running"
        reached = bool(b["planned_n_reached"])
        # the fixed-horizon interval in the same units as the always-valid one (relative to the control mean),
        # so that the two can be compared side by side
        with np.errstate(divide="ignore", invalid="ignore"):
            ends = (b["abs_ci_low"] / b["control_mean"], b["abs_ci_high"] / b["control_mean"])
        fixed_low, fixed_high = min(ends), max(ends)
        row = {**base, "verdict": verdict, "variant": b["variant"] if verdict == "ship" else None,
               "reason": reason, "next_step": step, "action": action, "best_variant": b["variant"], "n_control": ctrl_n.get((e, pm)),
               "n_treatment": int(b["n"]), "rel_lift": b["rel_lift"], "seq_rel_ci_low": b["seq_rel_ci_low"],
               "seq_rel_ci_high": b["seq_rel_ci_high"], "rel_ci_low_fixed_horizon": fixed_low,
               "rel_ci_high_fixed_horizon": fixed_high, "p_value_sequential": b["p_sequential_adjusted"],
               "planned_n_reached": reached, "p_value_fixed_horizon": b["p_adjusted"] if reached else np.nan,
               "fixed_horizon_note": "" if reached else "hidden until planned_n_per_arm is reached",
               "guardrails_harmed": _names(failed), "guardrails_unclear": _names(pending),
               "guardrails_checked": _names(g["metric"] for g in checked),
               "n_needed_per_arm": needed, "n_more_per_arm": more if action == "keep running" else np.nan}
        cc, tt = conv.get((e, s["control_variant"])), conv.get((e, b["variant"]))
        if pm == "conversion" and cc and tt:
            bayes_inputs.append((len(rows), cc["sum_y"], cc["n"], tt["sum_y"], tt["n"]))
        rows.append(row)
    if bayes_inputs:
        idx, xc, nc, xt, nt = (np.array(v) for v in zip(*bayes_inputs))
        pbc = prob_beat_control(xc, nc, xt, nt)
        for i, p in zip(idx, np.atleast_1d(pbc)):
            rows[i]["prob_beat_control"] = float(p)
            rows[i]["prob_beat_control_note"] = BAYES_LABEL
    out = pd.DataFrame(rows)
    for c in cols:
        if c not in out:
            out[c] = np.nan
    return out[cols]


def _power_table(results, cfgs, alpha) -> pd.DataFrame:
    cols = ["experiment_id", "metric", "variant", "n_control", "n_treatment", "planned_n_per_arm", "fraction_of_plan",
            "control_mean", "mde_abs", "mde_rel", "mde_rel_cuped", "cuped_rho2", "planned_mde_abs", "power_achieved",
            "convention"]
    primary = results["experiment_id"].map({e: c["primary_metric"] for e, c in cfgs.items()})
    t = results[~results["is_control"].astype(bool) & (results["metric"] == primary)
                & np.isfinite(results["p_value"].astype(float))]
    ctrl = results[results["is_control"].astype(bool)][["experiment_id", "metric", "n"]].rename(
        columns={"n": "n_control"})
    t = t.merge(ctrl, on=["experiment_id", "metric"], how="left")
    if t.empty:
        return pd.DataFrame(columns=cols)
    nc, nt = t["n_control"].to_numpy(float), t["n"].to_numpy(float)
    # per-unit variance (taken equal in both arms) recovered from the unadjusted SE
    var_unit = t["se_unadjusted"].to_numpy(float) ** 2 / (1 / nc + 1 / nt)
    rho2 = np.where(t["cuped_used"].fillna(False).astype(bool), t["cuped_variance_reduction"].astype(float), 0.0)
    rho = np.sqrt(np.clip(np.nan_to_num(rho2), 0, 1))
    planned = t["planned_n_per_arm"].to_numpy(float)
    cm = t["control_mean"].to_numpy(float)
    mde_abs = mde(nc, nt, var_unit, var_unit, alpha=alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        target = mde(planned, planned, var_unit, var_unit, alpha=alpha, rho=rho)
        out = pd.DataFrame({
            "experiment_id": t["experiment_id"], "metric": t["metric"], "variant": t["variant"],
            "n_control": nc.astype("int64"), "n_treatment": nt.astype("int64"), "planned_n_per_arm": planned,
            "fraction_of_plan": np.minimum(nc, nt) / planned, "control_mean": cm, "mde_abs": mde_abs,
            "mde_rel": mde_abs / np.abs(cm), "mde_rel_cuped": mde(nc, nt, var_unit, var_unit, alpha=alpha, rho=rho)
            / np.abs(cm), "cuped_rho2": rho**2, "planned_mde_abs": target,
            "power_achieved": achieved_power(target, nc, nt, var_unit, var_unit, alpha=alpha, rho=rho),
        })
    out["convention"] = "; ".join([N_("80% power, two-sided fixed-horizon normal approximation, unpooled variance"),
                                   N_("power_achieved = power now to detect the effect the planned n detects with "
                                      "80%")])
    return out[cols].reset_index(drop=True)


def cumulative_comparisons(
    daily: pd.DataFrame, ab_params: dict, *, metric: str | None = None, cuped: bool = True,
    test: str = "welch",
) -> pd.DataFrame:
    """Lift over time from :func:`crmlib.abtest.metrics.daily_cumulative_statistics`.

    One row per experiment x treatment variant x date for ``metric`` (default: each experiment's
    primary metric), with the fixed-horizon CI (valid only at a single planned look) and the
    confidence sequence (valid at every look).
    """
    ab = dict(ab_params)
    alpha = float(ab["alpha"])
    tuning = float(ab["sequential_tuning"])
    cols = ["experiment_id", "metric", "variant", "date", "n", "c_n", "abs_lift", "abs_ci_low", "abs_ci_high",
            "rel_lift", "rel_ci_low", "rel_ci_high", "p_value", "seq_ci_low", "seq_ci_high", "seq_rel_ci_low",
            "seq_rel_ci_high", "p_value_sequential"]
    if daily.empty:
        return pd.DataFrame(columns=cols)
    d = daily.copy()
    d["variant"] = d["variant"].astype(str)
    want = {e: (metric or experiment_config(ab, e)["primary_metric"]) for e in d["experiment_id"].unique()}
    d = d[d["metric"] == d["experiment_id"].map(want)]
    controls = resolve_controls(d, ab)
    is_ctrl = d["variant"] == d["experiment_id"].map(lambda e: controls[e][0])
    ctrl_cols = ["n", "sum_y", "sum_y2", "sum_x", "sum_x2", "sum_xy", "sum_den", "sum_den2", "sum_yden"]
    c = d[is_ctrl][["experiment_id", "metric", "date"] + ctrl_cols].rename(columns={k: f"c_{k}" for k in ctrl_cols})
    pairs = d[~is_ctrl].merge(c, on=["experiment_id", "metric", "date"], how="inner").reset_index(drop=True)
    # both arms need at least two units for a variance
    pairs = pairs[(pairs["n"] >= 2) & (pairs["c_n"] >= 2)].reset_index(drop=True)
    if pairs.empty:
        return pd.DataFrame(columns=cols)
    pairs = compare_arms(pairs, alpha=alpha, test=test, cuped=cuped)
    lo, hi, p = confidence_sequence(pairs["abs_lift"], pairs["se"], pairs["n"] + pairs["c_n"], alpha=alpha,
                                    tuning=tuning)
    pairs["seq_ci_low"], pairs["seq_ci_high"], pairs["p_value_sequential"] = lo, hi, p
    with np.errstate(divide="ignore", invalid="ignore"):
        # relative CS by the same delta-method scaling as the fixed-horizon relative CI
        scale = np.where(pairs["se"] > 0, pairs["rel_se"] / pairs["se"], np.nan)
        half = (hi - lo) / 2 * scale
    pairs["seq_rel_ci_low"] = pairs["rel_lift"] - half
    pairs["seq_rel_ci_high"] = pairs["rel_lift"] + half
    return pairs[cols].sort_values(["experiment_id", "variant", "date"]).reset_index(drop=True)
