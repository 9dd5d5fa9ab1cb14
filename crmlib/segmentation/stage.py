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
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from crmlib.asof import resolve_as_of as _resolve_as_of
from crmlib.report import write_people_csv
from crmlib.segmentation.audiences import write_audiences
from crmlib.segmentation.bgnbd import BetaGeoFitter
from crmlib.segmentation.clusters import ClusterResult, fit_clusters
from crmlib.segmentation.clv import DISCOUNT_CONVENTION, ONE_YEAR, customer_lifetime_value
from crmlib.segmentation.gamma_gamma import GammaGammaFitter
from crmlib.segmentation.rfm import rfm_features, score_rfm, segment_table
from crmlib.segmentation.summary import (
    HoldoutEvaluation,
    calibration_holdout_evaluation,
    repeat_purchase_summary,
)
from crmlib.segmentation.tiers import (
    churn_risk_tier,
    churn_warning_list,
    csat_by_segment,
    loyalty_spend,
    loyalty_tiers,
    migration_matrix,
    nps_by_segment,
)
from crmlib.status import CannotCompute, Unavailable, guard, record_warning

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
    as_of = resolve_as_of(engine, params)
    features = engine.to_pandas(rfm_features(engine.table("orders"), as_of))
    scored = score_rfm(features)
    scored["as_of"] = pd.Timestamp(as_of)
    out = scored[RFM_COLUMNS + ["rfm_score", "last_purchase", "as_of"]]
    engine.write_table("rfm", out)
    return out


def _rfm(engine, params: dict) -> pd.DataFrame:
    return engine.to_pandas(engine.table("rfm")) if engine.has_table("rfm") else rfm_stage(engine, params)


def segments_stage(engine, params: dict) -> pd.DataFrame:
    """Segment table (size, shares of customers and revenue, mean R/F/M) from ``rfm.parquet``."""
    table = segment_table(_rfm(engine, params))
    table.attrs["as_of"] = resolve_as_of(engine, params)
    return table


def clusters_stage(engine, params: dict) -> ClusterResult | Unavailable:
    """K-means on the RFM features; writes ``tables/clusters.parquet`` (customer_key, cluster, profile).

    Too few distinct customers for the clusters: the reason is recorded and returned (an
    :class:`~crmlib.status.Unavailable`) and no clusters table is written.
    """
    cfg = segmentation_settings(params)
    rfm = _rfm(engine, params)
    result = guard(engine, STAGE, "clusters", lambda: fit_clusters(rfm, cfg["k"], k_min=cfg["k_min"],
                                                                   k_max=cfg["k_max"], seed=cfg["seed"]))
    if isinstance(result, Unavailable):
        _remove_tables(engine, "clusters")
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


def _remove_tables(engine, *names: str) -> None:
    """Remove run tables a step could not write this time: an ``--only`` run starts from a copy of the last
    good run's tables, and a stale table must not pass for this run's result."""
    for name in names:
        engine.table_path(name).unlink(missing_ok=True)
        (engine.tables_dir / f"{name}.json").unlink(missing_ok=True)


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

    @property
    def clv_available(self) -> bool:
        """Whether the table holds CLV values (a spend model was fitted and gives a finite mean)."""
        return bool(self.table["clv"].notna().any())

    def __repr__(self) -> str:
        return (
            f"CLVStageResult(customers={len(self.table):,}, {self.bgnbd!r}, {self.gamma_gamma!r}, "
            f"evaluation={self.evaluation!r})"
        )


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
        raise CannotCompute(f"BG/NBD needs customers with a purchase up to {as_of}; this data has none "
                            "(every order is later, or every order is a refund).")
    bg = BetaGeoFitter(penalizer_coef=cfg["penalizer_coef"], time_unit=cfg["time_unit"], calibration_end=as_of)
    return bg.fit(summary["frequency"], summary["recency"], summary["T"])


def _clv_values(bg, gg, summary: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    return customer_lifetime_value(
        bg, gg, summary["frequency"], summary["recency"], summary["T"], summary["monetary_value"],
        horizon=cfg["horizon"], time_unit=cfg["time_unit"], discount_rate=cfg["discount_rate"], margin=cfg["margin"],
    )


def _fit_clv(engine, params: dict) -> CLVStageResult | Unavailable:
    cfg = segmentation_settings(params)
    as_of = resolve_as_of(engine, params)
    unit = cfg["time_unit"]
    expr = repeat_purchase_summary(engine.table("orders"), as_of, time_unit=unit, holdout_end=cfg["holdout_end"])
    summary = engine.to_pandas(expr)
    bg = guard(engine, STAGE, "BG/NBD purchase model", lambda: _fit_bgnbd(summary, cfg, as_of))
    if isinstance(bg, Unavailable):
        _remove_tables(engine, "clv", "clv_model")
        return bg
    gg = guard(engine, STAGE, "Gamma-Gamma spend model",
               lambda: GammaGammaFitter(penalizer_coef=cfg["penalizer_coef"], currency=cfg["currency"]).fit(
                   summary["frequency"], summary["monetary_value"]))
    values = None
    if not isinstance(gg, Unavailable):
        values = guard(engine, STAGE, "customer lifetime value", lambda: _clv_values(bg, gg, summary, cfg))
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
    return CLVStageResult(bg, gg, table, model_json, evaluation, summary)


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
    clv = _clv(engine, params)
    if isinstance(clv, Unavailable):
        return Unavailable("CLV by segment", clv.reason)
    merged = clv.merge(_rfm(engine, params)[["customer_key", "segment"]], on="customer_key", how="left")
    merged["segment"] = merged["segment"].fillna("unsegmented")
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
    return merged


def churn_stage(engine, params: dict) -> pd.DataFrame | Unavailable:
    """Churn-warning list (high/medium risk, most valuable first) from ``clv.parquet``.

    ``attrs["tier_counts"]`` holds the customer count per risk tier. The tiers come from the BG/NBD
    P(alive): without that model the reason is recorded and returned.
    """
    cfg = segmentation_settings(params)
    clv = _clv(engine, params)
    if isinstance(clv, Unavailable):
        reason = ("churn risk tiers come from P(alive) of the BG/NBD purchase model, which is not available: "
                  f"{clv.reason}")
        record_warning(engine, STAGE, "churn risk tiers", reason)
        return Unavailable("churn risk tiers", reason)
    warn = churn_warning_list(clv, top=cfg["warning_top"], value_col="revenue")
    warn.attrs["tier_counts"] = (
        clv["churn_risk"].value_counts().reindex(["high", "medium", "low"], fill_value=0).to_dict()
    )
    warn.attrs["thresholds"] = cfg["churn_thresholds"]
    return warn


def loyalty_stage(engine, params: dict) -> tuple[pd.DataFrame, pd.DataFrame | Unavailable]:
    """Loyalty tiers now and a year before ``as_of``; writes ``tables/loyalty.parquet``.

    Returns (per-customer tiers, migration matrix of counts). The matrix is an
    :class:`~crmlib.status.Unavailable` (reason recorded) when no customer bought up to ``as_of``.
    """
    cfg = segmentation_settings(params)
    as_of = resolve_as_of(engine, params)
    spend = engine.to_pandas(loyalty_spend(engine.table("orders"), as_of))
    tiered = loyalty_tiers(spend, as_of, cfg["loyalty_tiers"])
    engine.write_table(
        "loyalty", tiered[["customer_key", "spend_12m", "spend_prev_12m", "tier_year_before", "tier_now"]]
    )
    migration = guard(engine, STAGE, "loyalty tier migration", lambda: migration_matrix(tiered, cfg["loyalty_tiers"]))
    return tiered, migration


def surveys_stage(engine, params: dict, segment_col: str = "segment") -> dict[str, pd.DataFrame | Unavailable] | None:
    """NPS and CSAT by RFM segment with CIs, or None when the run has no surveys table.

    A question nobody answered (no score up to ``as_of`` from a known customer) is an
    :class:`~crmlib.status.Unavailable` with the reason recorded.
    """
    if not engine.has_table("surveys"):
        return None
    surveys = engine.to_pandas(engine.table("surveys"))
    segments = _rfm(engine, params)[["customer_key", segment_col]]
    as_of = resolve_as_of(engine, params)
    out = {}
    for name, column, step, compute in (("nps", "nps_score", "NPS by segment", nps_by_segment),
                                        ("csat", "csat", "CSAT by segment", csat_by_segment)):
        answers = surveys if column in surveys.columns else surveys.assign(**{column: float("nan")})
        out[name] = guard(engine, STAGE, step,
                          lambda c=compute, a=answers: c(a, segments, as_of=as_of, segment_col=segment_col))
    return out


def audiences_stage(engine, params: dict) -> pd.DataFrame:
    """One audience file per RFM segment and churn-risk tier; writes ``tables/audiences.parquet`` (summary).

    Churn-risk audiences need the BG/NBD P(alive); without it only the segment audiences are written.
    """
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


# -- report views: counts and charts for the notebook (the per-customer lists go to audience files) ------
# A view whose input step was not computed passes its Unavailable on; chart views (called in cells that end
# with ";", which hides a returned value) display it themselves so the report shows the reason in place.
def _show(unavailable: Unavailable) -> Unavailable:
    from IPython.display import display

    display(unavailable)
    return unavailable


def churn_tiers(engine, params: dict) -> pd.DataFrame | Unavailable:
    """Customers, revenue and mean P(alive) per churn-risk tier; writes the warning list as an audience file.

    The churn-warning list itself (customer keys, most valuable first) is written to
    ``run_dir/audiences/churn_warning.parquet`` for the CRM team; the report shows only counts.
    """
    cfg = segmentation_settings(params)
    warn = churn_stage(engine, params)
    if isinstance(warn, Unavailable):
        return warn
    out_dir = engine.run_dir / "audiences"
    out_dir.mkdir(parents=True, exist_ok=True)
    warn.to_parquet(out_dir / "churn_warning.parquet", index=False)
    write_people_csv(warn, out_dir / "churn_warning.csv")  # for marketing tools; formula cells neutralised
    clv = _clv(engine, params)
    table = clv.groupby("churn_risk").agg(customers=("customer_key", "size"), revenue=("revenue", "sum"),
                                          clv=("clv", "sum"), mean_p_alive=("p_alive", "mean"))
    table = table.reindex(["high", "medium", "low"]).fillna(0).reset_index()
    if clv["clv"].isna().all():
        table["clv"] = float("nan")  # not computed, rather than worth 0
    bounds = cfg["churn_thresholds"]
    table["rule"] = [f"P(alive) < {bounds['high']}", f"{bounds['high']} <= P(alive) < {bounds['medium']}",
                     f"P(alive) >= {bounds['medium']}"]
    table.attrs["warning_list"] = f"{len(warn):,} customers in audiences/churn_warning.parquet"
    return table


def k_scan_chart(clusters: ClusterResult | Unavailable):
    """Inertia and silhouette of the k scan with the chosen k, or the reason the clusters are missing."""
    from crmlib.segmentation.plotting import plot_k_scan

    if isinstance(clusters, Unavailable):
        return _show(clusters)
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
        return _show(result)
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
        return _show(clv_segments)
    if isinstance(result, Unavailable) or not result.clv_available:
        reason = result.model_json["clv"]["reason"] if not isinstance(result, Unavailable) else result.reason
        return _show(Unavailable("CLV by segment", reason))
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
        return Markdown("*No holdout evaluation: set `segmentation.clv.holdout_end` (a date after `run.as_of`) "
                        "to compare predicted with actual repeat purchases after the calibration period.*")
    return plot_calibration_holdout(result.evaluation)


def migration_chart(matrix: pd.DataFrame | Unavailable, ax=None):
    """Heat map of the loyalty-tier migration matrix (customers, tier a year before -> tier now)."""
    import matplotlib.pyplot as plt

    if isinstance(matrix, Unavailable):
        return _show(matrix)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.2))
    values = matrix.to_numpy(float)
    ax.imshow(values, cmap="Blues")
    ax.set_xticks(range(matrix.shape[1]), list(matrix.columns))
    ax.set_yticks(range(matrix.shape[0]), list(matrix.index))
    ax.set_xlabel(matrix.columns.name or "tier now")
    ax.set_ylabel(matrix.index.name or "tier a year before")
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            ax.text(j, i, f"{int(values[i, j]):,}", ha="center", va="center",
                    color="white" if values[i, j] > values.max() / 2 else "black", fontsize=9)
    ax.grid(False)
    ax.set_title("Loyalty tier migration (12-month net spend)")
    return ax
