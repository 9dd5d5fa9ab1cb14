"""Stage 2: RFM segments, k-means clusters, BG/NBD + Gamma-Gamma CLV, churn risk, loyalty tiers, audiences.

Statistics run in numpy/scipy on per-customer aggregates computed in the engine (Ibis over DuckDB).
The notebook calls the stage functions in :mod:`crmlib.segmentation.stage`, one per cell.
"""

from crmlib.segmentation.audiences import write_audiences
from crmlib.segmentation.bgnbd import BetaGeoFitter
from crmlib.segmentation.clusters import ClusterResult, fit_clusters
from crmlib.segmentation.clv import DISCOUNT_CONVENTION, customer_lifetime_value
from crmlib.segmentation.gamma_gamma import GammaGammaFitter
from crmlib.segmentation.rfm import SEGMENT_MAP, SEGMENTS, rfm_features, score_rfm, segment_table, tie_safe_scores
from crmlib.segmentation.simulate import simulate_bgnbd, simulate_gamma_gamma
from crmlib.segmentation.stage import (
    CLVStageResult,
    audiences_stage,
    churn_stage,
    clusters_stage,
    clv_by_segment,
    clv_stage,
    loyalty_stage,
    resolve_as_of,
    rfm_stage,
    segmentation_settings,
    segments_stage,
    surveys_stage,
)
from crmlib.segmentation.summary import (
    HoldoutEvaluation,
    calibration_holdout_evaluation,
    daily_purchases,
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

__all__ = [
    "BetaGeoFitter",
    "GammaGammaFitter",
    "customer_lifetime_value",
    "DISCOUNT_CONVENTION",
    "repeat_purchase_summary",
    "daily_purchases",
    "calibration_holdout_evaluation",
    "HoldoutEvaluation",
    "rfm_features",
    "score_rfm",
    "tie_safe_scores",
    "segment_table",
    "SEGMENTS",
    "SEGMENT_MAP",
    "fit_clusters",
    "ClusterResult",
    "churn_risk_tier",
    "churn_warning_list",
    "loyalty_spend",
    "loyalty_tiers",
    "migration_matrix",
    "nps_by_segment",
    "csat_by_segment",
    "write_audiences",
    "simulate_bgnbd",
    "simulate_gamma_gamma",
    "segmentation_settings",
    "resolve_as_of",
    "rfm_stage",
    "segments_stage",
    "clusters_stage",
    "clv_stage",
    "CLVStageResult",
    "clv_by_segment",
    "churn_stage",
    "loyalty_stage",
    "surveys_stage",
    "audiences_stage",
]
