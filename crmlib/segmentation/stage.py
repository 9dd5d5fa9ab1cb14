"""Stage functions for the segmentation notebook: one call per cell, each ``(engine, params)``.

Reads ``tables/orders.parquet`` (and, when present, ``customers`` for marketing consent and ``surveys``);
writes the contract tables ``rfm.parquet``, ``clv.parquet``, ``clv_model.json`` and the stage's own
``clusters.parquet``, ``loyalty.parquet``, ``audiences.parquet`` (+ ``run_dir/audiences/*.parquet``).

Params keys read (defaults in brackets)::

    run.as_of                              [latest order date]  calibration end / RFM date, inclusive
    run.currency                           [None]               label only
    segmentation.clv.time_unit             ["W"]                D | W | M
    segmentation.clv.holdout_end           [None]               evaluate on orders in (as_of, holdout_end]
    segmentation.clv.horizon               [52 W / 365 D / 12 M] CLV horizon in time units
    segmentation.clv.discount_rate         [0.10]               annual rate
    segmentation.clv.margin                [1.0]                CLV = margin x revenue
    segmentation.clv.penalizer_coef        [0.0]                L2 penalty for both fitters
    segmentation.clusters.k                [None]               None = best silhouette
    segmentation.clusters.k_min / k_max    [2 / 8]
    segmentation.clusters.seed             [0]
    segmentation.churn.thresholds          [{high: 0.3, medium: 0.7}]  p_alive < high -> high risk
    segmentation.churn.warning_top         [100]                length of the churn-warning list
    segmentation.loyalty.tiers             [Bronze 0, Silver 1000, Gold 5000, Platinum 20000]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from crmlib.segmentation.audiences import write_audiences
from crmlib.segmentation.bgnbd import BetaGeoFitter
from crmlib.segmentation.clusters import ClusterResult, fit_clusters
from crmlib.segmentation.clv import DISCOUNT_CONVENTION, customer_lifetime_value
from crmlib.segmentation.gamma_gamma import GammaGammaFitter
from crmlib.segmentation.rfm import rfm_features, score_rfm, segment_table
from crmlib.segmentation.summary import (
    HoldoutEvaluation,
    calibration_holdout_evaluation,
    repeat_purchase_summary,
    time_unit_days,
)
from crmlib.segmentation.tiers import (
    DEFAULT_CHURN_THRESHOLDS,
    DEFAULT_LOYALTY_TIERS,
    churn_risk_tier,
    churn_warning_list,
    csat_by_segment,
    loyalty_spend,
    loyalty_tiers,
    migration_matrix,
    nps_by_segment,
)

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
    "holdout_chart",
    "migration_chart",
]

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
DEFAULT_HORIZON = {"D": 365.0, "W": 52.0, "M": 12.0}


def _section(params: dict, *keys: str) -> dict:
    node: Any = params
    for key in keys:
        node = (node or {}).get(key) if isinstance(node, dict) else None
    return node or {}


def segmentation_settings(params: dict) -> dict:
    """The stage's settings with defaults filled in (see the module docstring)."""
    clv = _section(params, "segmentation", "clv")
    clusters = _section(params, "segmentation", "clusters")
    churn = _section(params, "segmentation", "churn")
    loyalty = _section(params, "segmentation", "loyalty")
    unit = str(clv.get("time_unit") or "W").upper()
    time_unit_days(unit)
    horizon = clv.get("horizon")
    return {
        "as_of": _section(params, "run").get("as_of"),
        "currency": _section(params, "run").get("currency"),
        "time_unit": unit,
        "holdout_end": clv.get("holdout_end"),
        "horizon": float(DEFAULT_HORIZON[unit] if horizon is None else horizon),
        "discount_rate": float(0.10 if clv.get("discount_rate") is None else clv["discount_rate"]),
        "margin": float(1.0 if clv.get("margin") is None else clv["margin"]),
        "penalizer_coef": float(clv.get("penalizer_coef") or 0.0),
        "k": clusters.get("k"),
        "k_min": int(clusters.get("k_min", 2)),
        "k_max": int(clusters.get("k_max", 8)),
        "seed": int(clusters.get("seed", 0)),
        "churn_thresholds": {**DEFAULT_CHURN_THRESHOLDS, **(churn.get("thresholds") or {})},
        "warning_top": int(churn.get("warning_top", 100)),
        "loyalty_tiers": loyalty.get("tiers") or DEFAULT_LOYALTY_TIERS,
    }


def resolve_as_of(engine, params: dict) -> str:
    """``run.as_of`` or, when unset, the latest order date (ISO string)."""
    as_of = _section(params, "run").get("as_of")
    if as_of:
        return pd.Timestamp(as_of).date().isoformat()
    orders = engine.table("orders")
    latest = engine.to_pandas(orders.order_ts.max())
    if latest is None or pd.isna(latest):
        raise ValueError("orders table is empty: cannot default run.as_of")
    return pd.Timestamp(latest).date().isoformat()


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


def clusters_stage(engine, params: dict) -> ClusterResult:
    """K-means on the RFM features; writes ``tables/clusters.parquet`` (customer_key, cluster, profile)."""
    cfg = segmentation_settings(params)
    rfm = _rfm(engine, params)
    result = fit_clusters(rfm, cfg["k"], k_min=cfg["k_min"], k_max=cfg["k_max"], seed=cfg["seed"])
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
    """Everything the CLV cells show: fitted models, the per-customer table, the holdout evaluation."""

    bgnbd: BetaGeoFitter
    gamma_gamma: GammaGammaFitter
    table: pd.DataFrame
    model_json: dict
    evaluation: HoldoutEvaluation | None
    summary: pd.DataFrame

    def __repr__(self) -> str:
        return (
            f"CLVStageResult(customers={len(self.table):,}, {self.bgnbd!r}, {self.gamma_gamma!r}, "
            f"evaluation={self.evaluation!r})"
        )


def clv_stage(engine, params: dict) -> CLVStageResult:
    """Fit BG/NBD + Gamma-Gamma on the calibration summary; per-customer CLV; optional holdout check.

    Writes ``tables/clv.parquet`` (contract columns + monetary_value, revenue, churn_risk) and
    ``tables/clv_model.json``.
    """
    cfg = segmentation_settings(params)
    as_of = resolve_as_of(engine, params)
    unit = cfg["time_unit"]
    expr = repeat_purchase_summary(engine.table("orders"), as_of, time_unit=unit, holdout_end=cfg["holdout_end"])
    summary = engine.to_pandas(expr)
    if summary.empty:
        raise ValueError(f"no purchases up to {as_of}: cannot fit the CLV models")
    bg = BetaGeoFitter(penalizer_coef=cfg["penalizer_coef"], time_unit=unit, calibration_end=as_of)
    bg.fit(summary["frequency"], summary["recency"], summary["T"])
    gg = GammaGammaFitter(penalizer_coef=cfg["penalizer_coef"], currency=cfg["currency"])
    gg.fit(summary["frequency"], summary["monetary_value"])
    values = customer_lifetime_value(
        bg,
        gg,
        summary["frequency"],
        summary["recency"],
        summary["T"],
        summary["monetary_value"],
        horizon=cfg["horizon"],
        time_unit=unit,
        discount_rate=cfg["discount_rate"],
        margin=cfg["margin"],
    )
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
        "gamma_gamma": {
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


def _clv(engine, params: dict) -> pd.DataFrame:
    return engine.to_pandas(engine.table("clv")) if engine.has_table("clv") else clv_stage(engine, params).table


def clv_by_segment(engine, params: dict) -> pd.DataFrame:
    """Per-customer CLV table joined with the RFM segment (for the CLV-by-segment plot).

    ``attrs["summary"]`` holds per segment: customers, mean/median/total CLV and mean P(alive).
    """
    clv = _clv(engine, params)
    merged = clv.merge(_rfm(engine, params)[["customer_key", "segment"]], on="customer_key", how="left")
    merged["segment"] = merged["segment"].fillna("unsegmented")
    summary = merged.groupby("segment").agg(
        customers=("customer_key", "size"),
        mean_clv=("clv", "mean"),
        median_clv=("clv", "median"),
        total_clv=("clv", "sum"),
        mean_p_alive=("p_alive", "mean"),
    )
    merged.attrs["summary"] = summary.reset_index()
    return merged


def churn_stage(engine, params: dict) -> pd.DataFrame:
    """Churn-warning list (high/medium risk, most valuable first) from ``clv.parquet``.

    ``attrs["tier_counts"]`` holds the customer count per risk tier.
    """
    cfg = segmentation_settings(params)
    clv = _clv(engine, params)
    warn = churn_warning_list(clv, top=cfg["warning_top"], value_col="revenue")
    warn.attrs["tier_counts"] = (
        clv["churn_risk"].value_counts().reindex(["high", "medium", "low"], fill_value=0).to_dict()
    )
    warn.attrs["thresholds"] = cfg["churn_thresholds"]
    return warn


def loyalty_stage(engine, params: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Loyalty tiers now and a year before ``as_of``; writes ``tables/loyalty.parquet``.

    Returns (per-customer tiers, migration matrix of counts).
    """
    cfg = segmentation_settings(params)
    as_of = resolve_as_of(engine, params)
    spend = engine.to_pandas(loyalty_spend(engine.table("orders"), as_of))
    tiered = loyalty_tiers(spend, as_of, cfg["loyalty_tiers"])
    engine.write_table(
        "loyalty", tiered[["customer_key", "spend_12m", "spend_prev_12m", "tier_year_before", "tier_now"]]
    )
    return tiered, migration_matrix(tiered, cfg["loyalty_tiers"])


def surveys_stage(engine, params: dict, segment_col: str = "segment") -> dict[str, pd.DataFrame] | None:
    """NPS and CSAT by RFM segment with CIs, or None when the run has no surveys table."""
    if not engine.has_table("surveys"):
        return None
    surveys = engine.to_pandas(engine.table("surveys"))
    segments = _rfm(engine, params)[["customer_key", segment_col]]
    as_of = resolve_as_of(engine, params)
    out = {}
    if "nps_score" in surveys.columns and surveys["nps_score"].notna().any():
        out["nps"] = nps_by_segment(surveys, segments, as_of=as_of, segment_col=segment_col)
    if "csat" in surveys.columns and surveys["csat"].notna().any():
        out["csat"] = csat_by_segment(surveys, segments, as_of=as_of, segment_col=segment_col)
    return out


def audiences_stage(engine, params: dict) -> pd.DataFrame:
    """One audience file per RFM segment and churn-risk tier; writes ``tables/audiences.parquet`` (summary)."""
    members = _rfm(engine, params)[["customer_key", "segment"]]
    clv = _clv(engine, params)[["customer_key", "churn_risk"]]
    members = members.merge(clv, on="customer_key", how="outer")
    consent = None
    if engine.has_table("customers"):
        customers = engine.table("customers")
        if "consent_marketing" in customers.columns:
            consent = engine.to_pandas(customers.select("customer_key", "consent_marketing"))
    frames = []
    for col in ["segment", "churn_risk"]:
        part = members[["customer_key", col]].dropna()
        frames.append(write_audiences(engine.run_dir, part, [col], consent))
    summary = pd.concat(frames, ignore_index=True)
    engine.write_table("audiences", summary)
    return summary


# -- report views: counts and charts for the notebook (the per-customer lists go to audience files) ------
def churn_tiers(engine, params: dict) -> pd.DataFrame:
    """Customers, revenue and mean P(alive) per churn-risk tier; writes the warning list as an audience file.

    The churn-warning list itself (customer keys, most valuable first) is written to
    ``run_dir/audiences/churn_warning.parquet`` for the CRM team; the report shows only counts.
    """
    cfg = segmentation_settings(params)
    warn = churn_stage(engine, params)
    out_dir = engine.run_dir / "audiences"
    out_dir.mkdir(parents=True, exist_ok=True)
    warn.to_parquet(out_dir / "churn_warning.parquet", index=False)
    clv = _clv(engine, params)
    table = clv.groupby("churn_risk").agg(customers=("customer_key", "size"), revenue=("revenue", "sum"),
                                          clv=("clv", "sum"), mean_p_alive=("p_alive", "mean"))
    table = table.reindex(["high", "medium", "low"]).fillna(0).reset_index()
    bounds = cfg["churn_thresholds"]
    table["rule"] = [f"P(alive) < {bounds['high']}", f"{bounds['high']} <= P(alive) < {bounds['medium']}",
                     f"P(alive) >= {bounds['medium']}"]
    table.attrs["warning_list"] = f"{len(warn):,} customers in audiences/churn_warning.parquet"
    return table


def holdout_chart(result: CLVStageResult):
    """The calibration/holdout plot, or a note when ``segmentation.clv.holdout_end`` is not set."""
    from IPython.display import Markdown

    from crmlib.segmentation.plotting import plot_calibration_holdout

    if result.evaluation is None:
        return Markdown("*No holdout evaluation: set `segmentation.clv.holdout_end` (a date after `run.as_of`) "
                        "to compare predicted with actual repeat purchases after the calibration period.*")
    return plot_calibration_holdout(result.evaluation)


def migration_chart(matrix: pd.DataFrame, ax=None):
    """Heat map of the loyalty-tier migration matrix (customers, tier a year before -> tier now)."""
    import matplotlib.pyplot as plt

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
