"""Stage functions for the segmentation notebook: one call per cell, each ``(engine, params)``.

Reads ``tables/orders.parquet`` (and, when present, ``customers`` for marketing consent and ``surveys``);
writes the contract tables ``rfm.parquet``, ``clv.parquet``, ``clv_model.json`` and the stage's own
``clusters.parquet``, ``loyalty.parquet``, ``audiences.parquet`` (+ ``run_dir/audiences/*.parquet``).

A step the data cannot support (clusters on too few distinct customers, BG/NBD without repeat buyers,
Gamma-Gamma with fewer than 3 repeat buyers, churn tiers without P(alive), a loyalty migration without
customers, NPS or CSAT without answers) is recorded in ``warnings.jsonl`` with its reason and
returned as a :class:`~crmlib.status.Unavailable`, which the report shows in place of the result; the
stage still writes every table it can (RFM, segments and loyalty always).

Params keys read (types, defaults and meanings: the schema, :mod:`crmlib.params` / ``docs/PARAMS.md``)::

    run.as_of                              calibration end / RFM date, inclusive
    run.currency                           label only
    segmentation.clv.time_unit             D | W | M
    segmentation.clv.holdout_end           evaluate on orders in (as_of, holdout_end]
    segmentation.clv.horizon               CLV horizon in time units (null = one year, :data:`ONE_YEAR`)
    segmentation.clv.discount_rate         annual rate
    segmentation.clv.margin                CLV = margin x revenue
    segmentation.clv.penalizer_coef        L2 penalty for both fitters
    segmentation.clusters.k                null = best silhouette in k_min..k_max
    segmentation.clusters.k_min / k_max / seed
    segmentation.churn.thresholds          p_alive < high -> high risk, < medium -> medium
    segmentation.churn.warning_top         length of the churn-warning list
    segmentation.loyalty.tiers             tiers by 12-month net spend
    segmentation.recommend.*               product recommendations (crmlib.segmentation.recommend)
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from crmlib import progress
from crmlib.asof import resolve_as_of as _resolve_as_of
from crmlib.i18n import N_, _
from crmlib.report import write_people_csv
from crmlib.segmentation.audiences import write_audiences
from crmlib.segmentation.bgnbd import BetaGeoFitter
from crmlib.segmentation.clusters import ClusterResult, fit_clusters, translated_profile
from crmlib.segmentation.clv import DISCOUNT_CONVENTION, ONE_YEAR, customer_lifetime_value
from crmlib.segmentation.gamma_gamma import GammaGammaFitter
from crmlib.segmentation.rfm import rfm_features, score_rfm, segment_table
from crmlib.segmentation.summary import (
    HoldoutEvaluation,
    calibration_holdout_evaluation,
    repeat_purchase_summary,
)
from crmlib.segmentation.tiers import (
    RISK_ORDER,
    UNSEGMENTED,
    churn_risk_tier,
    churn_warning_list,
    csat_by_segment,
    latest_survey_answers,
    loyalty_spend,
    loyalty_tiers,
    migration_matrix,
    nps_by_segment,
)
from crmlib.status import CannotCompute, Unavailable, guard, record_warning, show_notice

__all__ = [
    "segmentation_settings",
    "resolve_as_of",
    "rfm_stage",
    "segments_stage",
    "clusters_stage",
    "CLVStageResult",
    "clv_stage",
    "clv_by_segment",
    "churn_stage",
    "loyalty_stage",
    "surveys_stage",
    "audiences_stage",
    "recommendations_stage",
    "churn_tiers",
    "k_scan_chart",
    "cluster_profiles",
    "clv_parameters",
    "clv_matrix_chart",
    "clv_segment_summary",
    "clv_segment_chart",
    "holdout_chart",
    "migration_chart",
]

#: The runner's name of this stage (warnings are recorded under it).
STAGE = "segmentation"

RFM_COLUMNS = ["customer_key", "recency_days", "frequency", "monetary", "r_score", "f_score", "m_score", "segment"]
#: The rule of each churn-risk tier (high, medium, low): stored in English in ``churn_tiers.parquet``, shown
#: in the report's language.
TIER_RULES = (N_("P(alive) < {high}"), N_("{high} <= P(alive) < {medium}"), N_("P(alive) >= {medium}"))
CLV_COLUMNS = [
    "customer_key",
    "frequency",
    "recency",
    "T",
    "p_alive",
    "expected_purchases",
    "expected_avg_value",
    "clv",
]


def segmentation_settings(params: dict) -> dict:
    """The stage's settings from validated params (:func:`crmlib.params.load_params` or
    :func:`crmlib.params.complete_params`, which fill every default; see ``docs/PARAMS.md``)."""
    seg = params["segmentation"]
    clv, clusters, churn = seg["clv"], seg["clusters"], seg["churn"]
    unit = clv["time_unit"]
    horizon = clv["horizon"]
    return {
        "as_of": params["run"]["as_of"],
        "currency": params["run"]["currency"],
        "time_unit": unit,
        "holdout_end": clv["holdout_end"],
        # a null horizon means one year, in the model's time unit
        "horizon": float(ONE_YEAR[unit] if horizon is None else horizon),
        "discount_rate": float(clv["discount_rate"]),
        "margin": float(clv["margin"]),
        "penalizer_coef": float(clv["penalizer_coef"]),
        "k": clusters["k"],
        "k_min": int(clusters["k_min"]),
        "k_max": int(clusters["k_max"]),
        "seed": int(clusters["seed"]),
        "churn_thresholds": dict(churn["thresholds"]),
        "warning_top": int(churn["warning_top"]),
        "loyalty_tiers": list(seg["loyalty"]["tiers"]),
    }


def resolve_as_of(engine, params: dict) -> str:
    """The run's analysis date as ISO text (:func:`crmlib.asof.resolve_as_of`: ``run.as_of``, else the
    date ingest recorded, else the latest order date)."""
    return _resolve_as_of(engine, params).isoformat()


def rfm_stage(engine, params: dict) -> pd.DataFrame:
    """RFM features (Ibis) and tie-safe scores; writes ``tables/rfm.parquet``; returns the scored frame."""
    progress.step("RFM")
    as_of = resolve_as_of(engine, params)
    features = engine.to_pandas(rfm_features(engine.table("orders"), as_of))
    progress.step("RFM scores", done=len(features), unit="customers")
    scored = score_rfm(features)
    scored["as_of"] = pd.Timestamp(as_of)
    out = scored[RFM_COLUMNS + ["rfm_score", "last_purchase", "as_of"]]
    engine.write_table("rfm", out)
    return out


def _rfm(engine, params: dict) -> pd.DataFrame:
    return engine.to_pandas(engine.table("rfm")) if engine.has_table("rfm") else rfm_stage(engine, params)


def segments_stage(engine, params: dict) -> pd.DataFrame:
    """Segment table (size, shares of customers and revenue, mean R/F/M) from ``rfm.parquet``; writes
    ``tables/segments.parquet`` (the report and its findings read it)."""
    progress.step("RFM segments")
    table = segment_table(_rfm(engine, params))
    engine.write_table("segments", table)
    table.attrs["as_of"] = resolve_as_of(engine, params)
    return table


def clusters_stage(engine, params: dict) -> ClusterResult | Unavailable:
    """K-means on the RFM features; writes ``tables/clusters.parquet`` (customer_key, cluster, profile).

    Too few distinct customers for the clusters: the reason is recorded and returned (an
    :class:`~crmlib.status.Unavailable`) and no clusters table is written.
    """
    progress.step("clusters")
    cfg = segmentation_settings(params)
    rfm = _rfm(engine, params)
    result = guard(engine, STAGE, N_("clusters"), lambda: fit_clusters(rfm, cfg["k"], k_min=cfg["k_min"],
                                                                   k_max=cfg["k_max"], seed=cfg["seed"]))
    if isinstance(result, Unavailable):
        engine.remove_tables("clusters")
        return result
    words = result.profiles.set_index("cluster")["profile"]
    engine.write_table(
        "clusters",
        pd.DataFrame(
            {
                "customer_key": rfm["customer_key"],
                "cluster": result.labels,
                "profile": words.loc[result.labels].to_numpy(),
            }
        ),
    )
    return result


@dataclass
class CLVStageResult:
    """Everything the CLV cells show: fitted models, the per-customer table, the holdout evaluation.

    ``gamma_gamma`` is an :class:`~crmlib.status.Unavailable` when the spend model could not be fitted;
    the table then has P(alive) and expected purchases but null ``expected_avg_value`` and ``clv``.
    """

    bgnbd: BetaGeoFitter
    gamma_gamma: GammaGammaFitter | Unavailable
    table: pd.DataFrame
    model_json: dict
    evaluation: HoldoutEvaluation | None
    summary: pd.DataFrame
    #: why the table has no CLV values (the spend model or the CLV step), None when it has them
    clv_missing: Unavailable | None = None

    @property
    def clv_available(self) -> bool:
        """Whether the table holds CLV values (a spend model was fitted and gives a finite mean)."""
        return bool(self.table["clv"].notna().any())

    def __repr__(self) -> str:
        return (
            f"CLVStageResult(customers={len(self.table):,}, {self.bgnbd!r}, {self.gamma_gamma!r}, "
            f"evaluation={self.evaluation!r})"
        )

    def _repr_html_(self) -> str:
        # a report cell that ends with the result shows a sentence, never the Python repr
        return clv_overview(self).data


def clv_stage(engine, params: dict) -> CLVStageResult | Unavailable:
    """Fit BG/NBD + Gamma-Gamma on the calibration summary; per-customer CLV; optional holdout check.

    Writes ``tables/clv.parquet`` (contract columns + monetary_value, revenue, churn_risk) and
    ``tables/clv_model.json``. Each model that the data cannot support is recorded as a warning:

    * BG/NBD not fitted: nothing per customer can be said; no ``clv`` table or model file is written
      and the :class:`~crmlib.status.Unavailable` is returned;
    * Gamma-Gamma not fitted (or no finite mean spend): ``clv.parquet`` still holds P(alive), expected
      purchases and churn risk, with ``expected_avg_value`` and ``clv`` null, and ``clv_model.json`` says
      why under ``gamma_gamma`` and ``clv``.

    One fit per params for the engine: later cells that need the table reuse it.
    """
    key = ("segmentation", "clv", json.dumps(params, sort_keys=True, default=str))
    return engine.memo(key, lambda: _fit_clv(engine, params))


def _fit_bgnbd(summary: pd.DataFrame, cfg: dict, as_of: str) -> BetaGeoFitter:
    if summary.empty:
        raise CannotCompute(_("BG/NBD needs customers with a purchase up to {as_of}; this data has none "
                              "(every order is later, or every order is a refund).").format(as_of=as_of))
    bg = BetaGeoFitter(penalizer_coef=cfg["penalizer_coef"], time_unit=cfg["time_unit"], calibration_end=as_of)
    return bg.fit(summary["frequency"], summary["recency"], summary["T"])


def _clv_values(bg, gg, summary: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    return customer_lifetime_value(
        bg, gg, summary["frequency"], summary["recency"], summary["T"], summary["monetary_value"],
        horizon=cfg["horizon"], time_unit=cfg["time_unit"], discount_rate=cfg["discount_rate"], margin=cfg["margin"],
    )


def _fit_clv(engine, params: dict) -> CLVStageResult | Unavailable:
    progress.step("CLV fit")
    cfg = segmentation_settings(params)
    as_of = resolve_as_of(engine, params)
    unit = cfg["time_unit"]
    expr = repeat_purchase_summary(engine.table("orders"), as_of, time_unit=unit, holdout_end=cfg["holdout_end"])
    summary = engine.to_pandas(expr)
    progress.step("CLV fit", done=len(summary), unit="customers")
    bg = guard(engine, STAGE, N_("BG/NBD purchase model"), lambda: _fit_bgnbd(summary, cfg, as_of))
    if isinstance(bg, Unavailable):
        engine.remove_tables("clv", "clv_model")
        return bg
    gg = guard(engine, STAGE, N_("Gamma-Gamma spend model"),
               lambda: GammaGammaFitter(penalizer_coef=cfg["penalizer_coef"], currency=cfg["currency"]).fit(
                   summary["frequency"], summary["monetary_value"]))
    values = None
    if not isinstance(gg, Unavailable):
        values = guard(engine, STAGE, N_("customer lifetime value"), lambda: _clv_values(bg, gg, summary, cfg))
    clv_missing = gg if isinstance(gg, Unavailable) else values if isinstance(values, Unavailable) else None
    if clv_missing is not None:
        # the purchase model alone still gives P(alive), expected purchases and churn risk
        values = _clv_values(bg, None, summary, cfg)
    table = pd.concat([summary[["customer_key", "frequency", "recency", "T"]], values], axis=1)
    table["monetary_value"] = summary["monetary_value"].to_numpy()
    table["revenue"] = summary["calibration_revenue"].to_numpy()
    table["churn_risk"] = churn_risk_tier(table["p_alive"], cfg["churn_thresholds"])
    table["time_unit"] = unit
    table["calibration_end"] = pd.Timestamp(as_of)
    table = table[CLV_COLUMNS + ["monetary_value", "revenue", "churn_risk", "time_unit", "calibration_end"]]
    engine.write_table("clv", table)

    evaluation = None
    if cfg["holdout_end"] is not None:
        evaluation = calibration_holdout_evaluation(
            bg, summary, time_unit=unit, calibration_end=as_of, holdout_end=str(cfg["holdout_end"])
        )
    model_json = {
        "bgnbd": {
            **{k: float(v) for k, v in bg.params_.items()},
            "log_likelihood": bg.log_likelihood_,
            "n_customers": bg.n_customers_,
            "n_patterns": bg.n_patterns_,
            "fit_seconds": bg.fit_seconds_,
            "standard_errors": {k: float(v) for k, v in bg.summary["se(coef)"].items()},
            "converged": bg.convergence_.success,
            "gradient_norm": bg.convergence_.gradient_norm,
            "penalizer_coef": bg.penalizer_coef,
        },
        "gamma_gamma": {"fitted": False, "reason": gg.reason} if isinstance(gg, Unavailable) else {
            **{k: float(v) for k, v in gg.params_.items()},
            "log_likelihood": gg.log_likelihood_,
            "n_customers": gg.n_customers_,
            "n_skipped": gg.n_skipped_,
            "fit_seconds": gg.fit_seconds_,
            "standard_errors": {k: float(v) for k, v in gg.summary["se(coef)"].items()},
            "frequency_monetary_correlation": gg.frequency_monetary_correlation_,
            "converged": gg.convergence_.success,
            "penalizer_coef": gg.penalizer_coef,
        },
        "clv": ({"computed": True} if clv_missing is None else
                {"computed": False, "reason": f"{clv_missing.step}: {clv_missing.reason}",
                 "table": "clv.parquet holds p_alive, expected_purchases and churn_risk; "
                          "expected_avg_value and clv are null"}),
        "time_unit": unit,
        "calibration_end": as_of,
        "horizon": cfg["horizon"],
        "discount_rate_annual": cfg["discount_rate"],
        "discount_convention": DISCOUNT_CONVENTION,
        "margin": cfg["margin"],
        "holdout": None
        if evaluation is None
        else {
            "holdout_end": str(cfg["holdout_end"]),
            "duration": evaluation.duration_holdout,
            "actual_total": evaluation.actual_total,
            "predicted_total": evaluation.predicted_total,
            "mae": evaluation.mae,
            "rmse": evaluation.rmse,
        },
    }
    engine.write_json("clv_model", model_json)
    return CLVStageResult(bg, gg, table, model_json, evaluation, summary, clv_missing)


def _clv(engine, params: dict) -> pd.DataFrame | Unavailable:
    if engine.has_table("clv"):
        return engine.to_pandas(engine.table("clv"))
    result = clv_stage(engine, params)
    return result if isinstance(result, Unavailable) else result.table


def clv_by_segment(engine, params: dict) -> pd.DataFrame | Unavailable:
    """Per-customer CLV table joined with the RFM segment (for the CLV-by-segment plot).

    ``attrs["summary"]`` holds per segment: customers, mean/median/total CLV and mean P(alive) (CLV
    columns null when the spend model could not be fitted). Without a purchase model: its Unavailable.
    """
    progress.step("CLV by segment")
    clv = _clv(engine, params)
    if isinstance(clv, Unavailable):
        engine.remove_tables("clv_segments")
        return Unavailable(N_("CLV by segment"), clv.reason)
    merged = clv.merge(_rfm(engine, params)[["customer_key", "segment"]], on="customer_key", how="left")
    merged["segment"] = merged["segment"].fillna(UNSEGMENTED)
    summary = merged.groupby("segment").agg(
        customers=("customer_key", "size"),
        mean_clv=("clv", "mean"),
        median_clv=("clv", "median"),
        total_clv=("clv", "sum"),
        mean_p_alive=("p_alive", "mean"),
    )
    if merged["clv"].isna().all():
        # a sum over nothing is 0, which would read as "worth nothing"
        summary["total_clv"] = float("nan")
    merged.attrs["summary"] = summary.reset_index()
    engine.write_table("clv_segments", merged.attrs["summary"])
    return merged


def churn_stage(engine, params: dict) -> pd.DataFrame | Unavailable:
    """Churn-warning list (high/medium risk, most valuable first) from ``clv.parquet``.

    Writes the list to ``run_dir/audiences/churn_warning.parquet`` and ``.csv`` (for the CRM team and
    marketing tools; formula cells neutralised) and the per-tier counts to ``tables/churn_tiers.parquet``
    (customers, revenue, CLV, mean P(alive) and the rule of each tier; the report shows these counts).
    ``attrs["tier_counts"]`` holds the customer count per risk tier. The tiers come from the BG/NBD
    P(alive): without that model the reason is recorded and returned, and no tier table is written.
    """
    progress.step("churn risk")
    cfg = segmentation_settings(params)
    clv = _clv(engine, params)
    if isinstance(clv, Unavailable):
        engine.remove_tables("churn_tiers")
        reason = _("churn risk tiers come from P(alive) of the BG/NBD purchase model, which is not available: "
                   "{reason}").format(reason=clv.reason)
        record_warning(engine, STAGE, N_("churn risk tiers"), reason)
        return Unavailable(N_("churn risk tiers"), reason)
    warn = churn_warning_list(clv, top=cfg["warning_top"], value_col="revenue")
    out_dir = engine.run_dir / "audiences"
    out_dir.mkdir(parents=True, exist_ok=True)
    warn.to_parquet(out_dir / "churn_warning.parquet", index=False)
    write_people_csv(warn, out_dir / "churn_warning.csv")  # for marketing tools; formula cells neutralised
    table = clv.groupby("churn_risk").agg(customers=("customer_key", "size"), revenue=("revenue", "sum"),
                                          clv=("clv", "sum"), mean_p_alive=("p_alive", "mean"))
    table = table.reindex(RISK_ORDER).fillna(0).reset_index()
    if clv["clv"].isna().all():
        table["clv"] = float("nan")  # not computed, rather than worth 0
    bounds = cfg["churn_thresholds"]
    table["rule"] = [rule.format(**bounds) for rule in TIER_RULES]
    table["warning_list_customers"] = len(warn)
    engine.write_table("churn_tiers", table)
    warn.attrs["tier_counts"] = (
        clv["churn_risk"].value_counts().reindex(RISK_ORDER, fill_value=0).to_dict()
    )
    warn.attrs["thresholds"] = cfg["churn_thresholds"]
    return warn


def loyalty_stage(engine, params: dict) -> tuple[pd.DataFrame, pd.DataFrame | Unavailable]:
    """Loyalty tiers now and a year before ``as_of``; writes ``tables/loyalty.parquet``.

    Returns (per-customer tiers, migration matrix of counts). The matrix is an
    :class:`~crmlib.status.Unavailable` (reason recorded) when no customer bought up to ``as_of``.
    """
    progress.step("loyalty tiers")
    cfg = segmentation_settings(params)
    as_of = resolve_as_of(engine, params)
    spend = engine.to_pandas(loyalty_spend(engine.table("orders"), as_of))
    tiered = loyalty_tiers(spend, as_of, cfg["loyalty_tiers"])
    engine.write_table(
        "loyalty", tiered[["customer_key", "spend_12m", "spend_prev_12m", "tier_year_before", "tier_now"]]
    )
    migration = guard(engine, STAGE, N_("loyalty tier migration"),
                      lambda: migration_matrix(tiered, cfg["loyalty_tiers"]))
    return tiered, migration


def surveys_stage(engine, params: dict, segment_col: str = "segment") -> dict[str, pd.DataFrame | Unavailable] | None:
    """NPS and CSAT by RFM segment with CIs, or None when the run has no surveys table.

    A question nobody answered (no score up to ``as_of`` from a known customer) is an
    :class:`~crmlib.status.Unavailable` with the reason recorded.
    """
    progress.step("surveys")
    if not engine.has_table("surveys"):
        return None
    engine.remove_tables("nps_by_segment", "csat_by_segment")
    surveys = engine.table("surveys")
    survey_rows = int(engine.to_pandas(surveys.count()))
    segments = _rfm(engine, params)[["customer_key", segment_col]]
    as_of = resolve_as_of(engine, params)
    out = {}
    for name, column, step, compute in (("nps", "nps_score", N_("NPS by segment"), nps_by_segment),
                                        ("csat", "csat", N_("CSAT by segment"), csat_by_segment)):
        # the latest answer per customer, chosen in the engine: at most one row per customer reaches pandas
        answers = engine.to_pandas(latest_survey_answers(surveys, column, as_of))
        out[name] = guard(engine, STAGE, step,
                          lambda c=compute, a=answers: c(a, segments, as_of=as_of, segment_col=segment_col,
                                                         survey_rows=survey_rows))
        if isinstance(out[name], pd.DataFrame):
            engine.write_table(f"{name}_by_segment", out[name])
    return out


def audiences_stage(engine, params: dict) -> pd.DataFrame:
    """One audience file per RFM segment and churn-risk tier; writes ``tables/audiences.parquet`` (summary).

    Churn-risk audiences need the BG/NBD P(alive); without it only the segment audiences are written.
    """
    progress.step("audiences")
    members = _rfm(engine, params)[["customer_key", "segment"]]
    clv = _clv(engine, params)
    columns = ["segment"]
    if not isinstance(clv, Unavailable):
        members = members.merge(clv[["customer_key", "churn_risk"]], on="customer_key", how="outer")
        columns.append("churn_risk")
    consent = None
    if engine.has_table("customers"):
        customers = engine.table("customers")
        if "consent_marketing" in customers.columns:
            consent = engine.to_pandas(customers.select("customer_key", "consent_marketing"))
    frames = []
    for col in columns:
        part = members[["customer_key", col]].dropna()
        frames.append(write_audiences(engine.run_dir, part, [col], consent))
    summary = pd.concat(frames, ignore_index=True)
    engine.write_table("audiences", summary)
    return summary


def recommendations_stage(engine, params: dict):
    """Product recommendations (buy again / next basket, cross-sell, also bought) and their holdout test.

    Writes ``tables/recommendations.parquet``, ``also_bought.parquet``, ``rec_evaluation.parquet`` and the
    consent-filtered ``audiences/recommendations_<list>.csv`` (see :mod:`crmlib.segmentation.recommend`).
    Returns None when the run has no order lines (the page says so and the stage goes on), the recorded
    reason when they cannot support a recommender, else a
    :class:`~crmlib.segmentation.recommend.RecommendationResult`.
    """
    progress.step("recommendations")
    from crmlib.segmentation.recommend import RecommendSettings, run_recommendations

    settings = RecommendSettings.from_params(params["segmentation"].get("recommend"))
    segments = _rfm(engine, params)[["customer_key", "segment"]] if engine.has_table("order_lines") else None
    return run_recommendations(engine, settings, as_of=resolve_as_of(engine, params), stage=STAGE,
                               segments=segments)


# -- report views: counts and charts for the notebook (the per-customer lists go to audience files) ------
# A view whose input step was not computed passes its Unavailable on; chart views (called in cells that end
# with ";", which hides a returned value) display it themselves so the report shows the reason in place.
def churn_tiers(engine, params: dict) -> pd.DataFrame | Unavailable:
    """Customers, revenue, CLV and mean P(alive) per churn-risk tier, read from ``tables/churn_tiers.parquet``.

    :func:`churn_stage` writes that table (and the churn-warning audience files); this view only reads
    it, running the stage first when it has not run on this engine yet.
    """
    if not engine.has_table("churn_tiers"):
        warn = churn_stage(engine, params)
        if isinstance(warn, Unavailable):
            return warn
    return engine.to_pandas(engine.table("churn_tiers"))


def k_scan_chart(clusters: ClusterResult | Unavailable):
    """Inertia and silhouette of the k scan with the chosen k, or the reason the clusters are missing."""
    from crmlib.segmentation.plotting import plot_k_scan

    if isinstance(clusters, Unavailable):
        return show_notice(clusters)
    return plot_k_scan(clusters.scan, clusters.k)


def cluster_profiles(clusters: ClusterResult | Unavailable) -> pd.DataFrame | Unavailable:
    """The cluster profiles in plain words, or the reason the clusters are missing."""
    return clusters if isinstance(clusters, Unavailable) else clusters.profiles


def clv_parameters(result: CLVStageResult | Unavailable, model: str = "bgnbd") -> pd.DataFrame | Unavailable:
    """Coefficient table of the fitted ``bgnbd`` or ``gamma_gamma`` model, or why it was not fitted."""
    if isinstance(result, Unavailable):
        return result
    fitted = getattr(result, model)
    return fitted if isinstance(fitted, Unavailable) else fitted.summary.reset_index()


def clv_matrix_chart(result: CLVStageResult | Unavailable, kind: str = "frequency_recency"):
    """BG/NBD expected purchases (``frequency_recency``) or P(alive) (``probability_alive``) by frequency
    and recency, for a customer observed for the whole calibration period (the longest T)."""
    from crmlib.segmentation import plotting

    if isinstance(result, Unavailable):
        return show_notice(result)
    plot = {"frequency_recency": plotting.plot_frequency_recency_matrix,
            "probability_alive": plotting.plot_probability_alive_matrix}[kind]
    return plot(result.bgnbd, T=result.summary["T"].max())


def clv_segment_summary(clv_segments: pd.DataFrame | Unavailable) -> pd.DataFrame | Unavailable:
    """Per segment: customers, mean/median/total CLV and mean P(alive) (see :func:`clv_by_segment`)."""
    return clv_segments if isinstance(clv_segments, Unavailable) else clv_segments.attrs["summary"]


def clv_segment_chart(clv_segments: pd.DataFrame | Unavailable, result: CLVStageResult | Unavailable,
                      currency: str | None = None):
    """CLV distribution by segment, or the reason CLV is missing (no purchase or no spend model)."""
    from crmlib.segmentation.plotting import plot_clv_by_segment

    if isinstance(clv_segments, Unavailable):
        return show_notice(clv_segments)
    if isinstance(result, Unavailable) or not result.clv_available:
        missing = result if isinstance(result, Unavailable) else result.clv_missing
        reason = (_("{step}: {reason}").format(step=_(missing.step), reason=missing.reason) if missing is not None
                  else result.model_json["clv"]["reason"])
        return show_notice(Unavailable(N_("CLV by segment"), reason))
    m = result.model_json
    return plot_clv_by_segment(clv_segments, time_unit=m["time_unit"], horizon=m["horizon"],
                               calibration_end=m["calibration_end"], currency=currency)


def holdout_chart(result: CLVStageResult | Unavailable):
    """The calibration/holdout plot, or a note when ``segmentation.clv.holdout_end`` is not set."""
    from IPython.display import Markdown

    from crmlib.segmentation.plotting import plot_calibration_holdout

    if isinstance(result, Unavailable):
        return result
    if result.evaluation is None:
        return Markdown("*" + _("No holdout evaluation: set `segmentation.clv.holdout_end` (a date after "
                                "`run.as_of`) to compare predicted with actual repeat purchases after the "
                                "calibration period.") + "*")
    return plot_calibration_holdout(result.evaluation)


def migration_chart(matrix: pd.DataFrame | Unavailable, ax=None):
    """Heat map of the loyalty-tier migration matrix (customers, tier a year before -> tier now)."""
    import matplotlib.pyplot as plt

    if isinstance(matrix, Unavailable):
        return show_notice(matrix)
    if ax is None:
        ax = plt.subplots(figsize=(6.5, 4.2))[1]
    values = matrix.to_numpy(float)
    ax.imshow(values, cmap="Blues")
    # tier names from the params are the user's words; "new" and "none" are the pipeline's (in the catalog)
    ax.set_xticks(range(matrix.shape[1]), [_(str(c)) for c in matrix.columns])
    ax.set_yticks(range(matrix.shape[0]), [_(str(i)) for i in matrix.index])
    ax.set_xlabel(_(matrix.columns.name or N_("tier now")))
    ax.set_ylabel(_(matrix.index.name or N_("tier a year before")))
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            ax.text(j, i, f"{int(values[i, j]):,}", ha="center", va="center",
                    color="white" if values[i, j] > values.max() / 2 else "black", fontsize=9)
    ax.grid(False)
    ax.set_title(_("Loyalty tier migration (12-month net spend)"))
    return ax


# -- page views: the tables and sentences the report shows (they read, format and display; never write) --
def _labelled(df: pd.DataFrame, labels: dict[str, str], kinds: dict[str, str]) -> tuple[pd.DataFrame, dict, list]:
    """``df`` restricted to ``labels``' columns, renamed to their plain-words headers, with the kinds re-keyed."""
    cols = [c for c in labels if c in df.columns]
    out = df[cols].rename(columns=labels)
    return out, {labels[c]: k for c, k in kinds.items() if c in cols}, [labels[c] for c in cols]


def segments_view(segments: pd.DataFrame, *, currency: str | None = None, run_dir=None):
    """The RFM segments, largest revenue first: customers, shares, revenue and mean R/F/M, full table as download."""
    from crmlib.i18n import _
    from crmlib.report import show

    labels = {"segment": _("segment"), "customers": _("customers"), "share_customers": _("share of customers"),
              "revenue": _("net revenue"), "share_revenue": _("share of revenue"),
              "mean_recency_days": _("days since last purchase (mean)"),
              "mean_frequency": _("purchase days (mean)"), "mean_monetary": _("revenue per customer (mean)")}
    kinds = {"segment": "label", "customers": "count", "share_customers": "percent", "revenue": "money",
             "share_revenue": "percent", "mean_recency_days": "number", "mean_frequency": "number",
             "mean_monetary": "money"}
    frame, kinds, cols = _labelled(segments.sort_values("revenue", ascending=False), labels, kinds)
    return show(frame, kinds=kinds, currency=currency, columns=cols, max_rows=10,
                caption=_("RFM segments, largest revenue first"), download="segments" if run_dir else None,
                run_dir=run_dir)


def clusters_view(clusters: ClusterResult | Unavailable, *, currency: str | None = None, run_dir=None):
    """One sentence on how many clusters and how k was chosen, and the profile table; or why not computed."""
    import html

    from IPython.display import HTML, display

    from crmlib.i18n import _
    from crmlib.present import fmt_count
    from crmlib.report import show

    if isinstance(clusters, Unavailable):
        return show_notice(clusters)
    display(HTML("<p>" + html.escape(_("{k} clusters of {n} customers; k was chosen by {how}.").format(
        k=clusters.k, n=fmt_count(clusters.labels.size),
        how={"best silhouette": _("the best silhouette score"),
             "parameter": _("the parameter segmentation.clusters.k")}.get(clusters.chosen_by, clusters.chosen_by))) + "</p>"))
    labels = {"cluster": _("cluster"), "profile": _("profile"), "customers": _("customers"),
              "share_customers": _("share of customers"), "mean_recency_days": _("days since last purchase (mean)"),
              "mean_frequency": _("purchase days (mean)"), "mean_monetary": _("revenue per customer (mean)")}
    kinds = {"customers": "count", "share_customers": "percent", "mean_recency_days": "number",
             "mean_frequency": "number", "mean_monetary": "money"}
    profiles = clusters.profiles
    if {"recency_z", "frequency_z", "monetary_z"} <= set(profiles.columns):  # the stored words are English
        profiles = profiles.assign(profile=[translated_profile(r, f, m) for r, f, m in zip(
            profiles["recency_z"], profiles["frequency_z"], profiles["monetary_z"])])
    frame, kinds, cols = _labelled(profiles, labels, kinds)
    return show(frame, kinds=kinds, currency=currency, columns=cols, caption=_("Cluster profiles"),
                download="cluster_profiles" if run_dir else None, run_dir=run_dir)


def clv_overview(result: CLVStageResult | Unavailable):
    """Two plain sentences on the fitted models (customers, convergence), or why CLV was not computed."""
    import html

    from IPython.display import HTML

    from crmlib.i18n import _
    from crmlib.present import fmt_count, fmt_number

    if isinstance(result, Unavailable):
        return result
    m = result.model_json
    bg = m["bgnbd"]
    text = _("The purchase model (BG/NBD) was fitted on {n} customers up to {end} and {converged}.").format(
        n=fmt_count(bg["n_customers"]), end=m["calibration_end"],
        converged=_("converged") if bg["converged"] else _("did not converge: treat its numbers with care"))
    gg = m["gamma_gamma"]
    if gg.get("fitted", True) and "n_customers" in gg:
        spend = _("The spend model (Gamma-Gamma) used the {n} repeat buyers ({skipped} one-time buyers "
                  "left out); the correlation of purchase count and spend is {corr} (near zero is what the "
                  "model assumes).").format(n=fmt_count(gg["n_customers"]), skipped=fmt_count(gg["n_skipped"]),
                                            corr=fmt_number(gg["frequency_monetary_correlation"]))
        # sentences are joined by a space in English and by nothing in Chinese
        text = _("{sentence} {next_sentence}").format(sentence=text, next_sentence=spend)
    return HTML(f"<p>{html.escape(text)}</p>")


def clv_parameters_view(result: CLVStageResult | Unavailable, model: str = "bgnbd"):
    """The fitted coefficients with 95 % intervals (for the method notes), or why the model is missing."""
    from crmlib.i18n import _
    from crmlib.report import show

    table = clv_parameters(result, model)
    if isinstance(table, Unavailable):
        return table
    labels = {"param": _("parameter"), "coef": _("estimate"), "se(coef)": _("standard error"),
              "lower 95% bound": _("95% interval, low"), "upper 95% bound": _("95% interval, high")}
    kinds = {c: "number" for c in ("coef", "se(coef)", "lower 95% bound", "upper 95% bound")}
    frame, kinds, cols = _labelled(table, labels, kinds)
    caption = _("BG/NBD purchase model") if model == "bgnbd" else _("Gamma-Gamma spend model")
    return show(frame, kinds=kinds, columns=cols, caption=caption)


def clv_segments_view(clv_segments: pd.DataFrame | Unavailable, *, currency: str | None = None, run_dir=None):
    """Per segment: customers, total, mean and median CLV and mean P(alive), highest total first."""
    from crmlib.i18n import _
    from crmlib.report import show

    summary = clv_segment_summary(clv_segments)
    if isinstance(summary, Unavailable):
        return summary
    labels = {"segment": _("segment"), "customers": _("customers"), "total_clv": _("total CLV"),
              "mean_clv": _("mean CLV"), "median_clv": _("median CLV"), "mean_p_alive": _("still active (mean P(alive))")}
    kinds = {"segment": "label", "customers": "count", "total_clv": "money", "mean_clv": "money",
             "median_clv": "money", "mean_p_alive": "percent"}
    frame, kinds, cols = _labelled(summary.sort_values("total_clv", ascending=False), labels, kinds)
    return show(frame, kinds=kinds, currency=currency, columns=cols, caption=_("Customer lifetime value by segment"),
                download="clv_by_segment" if run_dir else None, run_dir=run_dir)


def churn_tiers_view(engine, params: dict, *, run_dir=None):
    """Customers, revenue, CLV and mean P(alive) per churn-risk tier, with the rule of each tier."""
    from crmlib.i18n import _
    from crmlib.report import show

    table = churn_tiers(engine, params)
    if isinstance(table, Unavailable):
        return table
    labels = {"churn_risk": _("churn risk"), "rule": _("rule"), "customers": _("customers"),
              "revenue": _("past net revenue"), "clv": _("expected CLV"), "mean_p_alive": _("still active (mean P(alive))")}
    kinds = {"churn_risk": "label", "customers": "count", "revenue": "money", "clv": "money",
             "mean_p_alive": "percent"}
    bounds = segmentation_settings(params)["churn_thresholds"]
    rules = dict(zip(RISK_ORDER, (_(rule).format(**bounds) for rule in TIER_RULES)))
    table = table.assign(rule=[rules.get(tier, rule) for tier, rule in zip(table["churn_risk"], table["rule"])])
    frame, kinds, cols = _labelled(table, labels, kinds)
    return show(frame, kinds=kinds, currency=params["run"]["currency"], columns=cols,
                caption=_("Churn risk tiers"), download="churn_tiers" if run_dir else None, run_dir=run_dir)


def survey_view(surveys: dict | None, name: str = "nps", *, run_dir=None):
    """NPS (as -100..100) or CSAT per segment with 95 % intervals; or why not computed / no survey data."""
    from IPython.display import Markdown

    from crmlib.i18n import _
    from crmlib.report import escape_markdown, show

    if surveys is None:
        return Markdown(escape_markdown(_("This run has no survey data.")))
    table = surveys.get(name)
    if isinstance(table, Unavailable) or table is None:
        return table
    table = table.copy()
    if name == "nps":
        for col in ("nps", "ci_low", "ci_high"):  # NPS is read on its usual -100..100 scale
            table[col] = table[col] * 100
        value_kinds = {"segment": "label", "nps": "number", "ci_low": "number", "ci_high": "number",
                       "promoters": "percent", "detractors": "percent"}
        labels = {"segment": _("segment"), "n": _("answers"), "nps": _("NPS"), "ci_low": _("95% interval, low"),
                  "ci_high": _("95% interval, high"), "promoters": _("promoters"), "detractors": _("detractors")}
        caption = _("NPS by segment (-100 to 100)")
    else:
        value_cols = [c for c in table.columns if c not in ("segment", "n") and pd.api.types.is_numeric_dtype(table[c])]
        value_kinds = {"segment": "label", **{c: "percent" if c.startswith("share") else "number" for c in value_cols}}
        known = {"mean_csat": _("mean CSAT (1-5)"), "mean_ci_low": _("mean CSAT, 95% interval low"),
                 "mean_ci_high": _("mean CSAT, 95% interval high"), "share_satisfied": _("share satisfied (4-5)"),
                 "share_ci_low": _("share satisfied, 95% interval low"),
                 "share_ci_high": _("share satisfied, 95% interval high")}
        labels = {"segment": _("segment"), "n": _("answers"), **{c: known.get(c, c) for c in value_cols}}
        caption = _("CSAT by segment")
    frame, kinds, cols = _labelled(table, labels, {"n": "count", **value_kinds})
    return show(frame, kinds=kinds, columns=cols[:8], caption=caption,
                download=f"{name}_by_segment" if run_dir else None, run_dir=run_dir)


def audiences_view(summary: pd.DataFrame, *, run_dir=None):
    """The audience files: list, customers, excluded for no consent, written (the file is under audiences/)."""
    from crmlib.i18n import _
    from crmlib.report import show

    labels = {"path": _("file"), "kind": _("list of"), "value": _("value"), "customers": _("customers"),
              "excluded_no_consent": _("left out: no marketing consent"), "written": _("in the file")}
    kinds = {"value": "label", "customers": "count", "excluded_no_consent": "count", "written": "count"}
    lists = {"segment": _("RFM segment"), "churn_risk": _("churn risk")}
    table = summary.assign(path=summary["path"].astype(str).str.replace(".parquet", ".csv", regex=False),
                           kind=[lists.get(k, k) for k in summary["kind"]])
    frame, kinds, cols = _labelled(table, labels, kinds)
    return show(frame, kinds=kinds, columns=cols, max_rows=20, caption=_("Audience files"),
                download="audiences" if run_dir else None, run_dir=run_dir)


# -- charts with their takeaway (title), caption and alt text --------------------------------------------
def _figure(chart, *, title: str, caption: str, alt: str) -> None:
    """Show ``chart`` through :func:`crmlib.report.figure`; an Unavailable or a note (already shown or
    returned by the chart view) is displayed as it is."""
    from IPython.display import display
    from matplotlib.axes import Axes

    from crmlib.report import figure

    if chart is None or isinstance(chart, Unavailable):
        return None
    if not isinstance(chart, Axes) and not hasattr(chart, "figure") and not hasattr(chart, "savefig"):
        display(chart)  # a Markdown note (no holdout period set)
        return None
    if isinstance(chart, Axes):
        chart.set_title("")  # the figure's title states the takeaway
    figure(chart, title=title, caption=caption, alt=alt)
    return None


def segment_shares_figure(segments: pd.DataFrame) -> None:
    """Share of customers vs share of revenue per segment, titled with the segment that holds the most revenue."""
    from crmlib.i18n import _
    from crmlib.present import fmt_percent
    from crmlib.segmentation.plotting import plot_segment_shares

    top = segments.sort_values("revenue", ascending=False).iloc[0]
    _figure(plot_segment_shares(segments),
            title=_("{segment} hold {revenue} of revenue with {customers} of the customers").format(
                segment=_(top["segment"]), revenue=fmt_percent(top["share_revenue"]),
                customers=fmt_percent(top["share_customers"])),
            caption=_("Per RFM segment: share of customers (solid) and share of net revenue (hatched)."),
            alt=_("Horizontal bar chart comparing each segment's share of customers with its share of revenue."))


def rf_heatmap_figure(rfm: pd.DataFrame) -> None:
    """Customers per (R, F) score cell, titled with the share who bought recently and often."""
    from crmlib.i18n import _
    from crmlib.present import fmt_percent
    from crmlib.segmentation.plotting import plot_rf_heatmap

    share = float(((rfm["r_score"] >= 4) & (rfm["f_score"] >= 4)).mean()) if len(rfm) else float("nan")
    _figure(plot_rf_heatmap(rfm),
            title=_("{share} of customers bought both recently and often (R and F scores 4-5)").format(
                share=fmt_percent(share)),
            caption=_("Customers per recency score (rows, 5 = most recent, on top) and frequency score (columns)."),
            alt=_("Heat map of customer counts by recency score and frequency score."))


def k_scan_figure(clusters: ClusterResult | Unavailable) -> None:
    """The k scan (inertia and silhouette) with the chosen k."""
    from crmlib.i18n import _

    chart = k_scan_chart(clusters)
    if isinstance(clusters, Unavailable):
        return None
    _figure(chart, title=_("{k} clusters separate the customers best").format(k=clusters.k)
            if clusters.chosen_by == "best silhouette" else _("{k} clusters, as set in the params").format(k=clusters.k),
            caption=_("Inertia (lower is tighter) and silhouette (higher is better separated) for each number of "
                      "clusters tried; the chosen number is marked."),
            alt=_("Line charts of inertia and silhouette score against the number of clusters."))


def clv_matrix_figure(result: CLVStageResult | Unavailable, kind: str = "frequency_recency") -> None:
    """Expected purchases or P(alive) by frequency and recency, with the model's reading as title."""
    from crmlib.i18n import _

    chart = clv_matrix_chart(result, kind)
    if isinstance(result, Unavailable):
        return None
    if kind == "frequency_recency":
        title = _("Customers who bought often and recently are expected to buy the most")
        caption = _("Expected purchases over the next period by past purchase count and recency, for a customer "
                    "observed for the whole calibration period (BG/NBD).")
    else:
        title = _("A frequent buyer who has not bought for a long time has probably gone")
        caption = _("Probability that a customer is still active, by past purchase count and recency (BG/NBD).")
    _figure(chart, title=title, caption=caption,
            alt=_("Heat map over purchase count and recency; the colour gives the model's value."))


def holdout_figure(result: CLVStageResult | Unavailable) -> None:
    """Predicted vs actual repeat purchases in the holdout period, or why there is none."""
    from crmlib.i18n import _

    chart = holdout_chart(result)
    if isinstance(result, Unavailable):
        return result
    _figure(chart, title=_("Predicted and actual repeat purchases after the calibration period"),
            caption=_("Cumulative repeat purchases the purchase model predicted and those that happened."),
            alt=_("Line chart of predicted and actual cumulative repeat purchases over time."))


def clv_segment_figure(clv_segments: pd.DataFrame | Unavailable, result: CLVStageResult | Unavailable,
                       currency: str | None = None) -> None:
    """CLV distribution by segment, titled with the most valuable segment."""
    from crmlib.i18n import _
    from crmlib.present import fmt_money

    chart = clv_segment_chart(clv_segments, result, currency=currency)
    if isinstance(chart, Unavailable):
        return None
    summary = clv_segments.attrs["summary"].dropna(subset=["mean_clv"]).sort_values("mean_clv", ascending=False)
    top = summary.iloc[0]
    _figure(chart, title=_("Customers in {segment} are worth the most: {mean} each on average").format(
                segment=_(top["segment"]), mean=fmt_money(top["mean_clv"], currency)),
            caption=_("Distribution of customer lifetime value per RFM segment over the model's horizon."),
            alt=_("Box plots of customer lifetime value per segment."))


def migration_figure(matrix: pd.DataFrame | Unavailable) -> None:
    """The loyalty-tier migration heat map, titled with the share who stayed in their tier."""
    import numpy as np

    from crmlib.i18n import _
    from crmlib.present import fmt_percent

    chart = migration_chart(matrix)
    if isinstance(matrix, Unavailable):
        return None
    same = [t for t in matrix.index if t in matrix.columns]
    total = float(matrix.to_numpy(float).sum())
    stayed = float(np.sum([matrix.loc[t, t] for t in same])) / total if total else float("nan")
    _figure(chart, title=_("{share} of customers are in the same loyalty tier as a year ago").format(
                share=fmt_percent(stayed)),
            caption=_("Customers by loyalty tier a year before the as-of date (rows) and now (columns), by "
                      "12-month net spend."),
            alt=_("Heat map of customer counts moving between loyalty tiers."))
