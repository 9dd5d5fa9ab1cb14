"""crmlib.abtest: A/B and holdout experiment analysis from sufficient statistics (stage 4).

Statistics (numpy/scipy, vectorized over comparisons) run on per-arm sums produced by Ibis
expressions over the engine. Conventions: Welch t with Satterthwaite df and unpooled SE (p-value and
CI from the same SE); relative lift CI by the delta method (Fieller beside it); CUPED with pooled θ;
ratio metrics by the delta method at the randomization unit; SRM chi-square gate at p < 0.001;
Holm (default) or BH within explicit families; verdicts from an always-valid asymptotic confidence
sequence (peeking-safe); exact Beta-Binomial chance to beat control (not peeking-safe).
"""

from . import stage
from .analysis import ABAnalysis, analyze, cumulative_comparisons
from .bayes import expected_loss, prob_beat_control
from .cuped import CupedResult, cuped_test
from .holdout import holdout_experiments, incrementality
from .metrics import daily_cumulative_statistics, sufficient_statistics, unit_outcomes
from .multiple import adjust_pvalues, benjamini_hochberg, holm
from .plotting import plot_cumulative_lift, plot_forest
from .power import achieved_power, mde, sample_size_means, sample_size_per_arm, sample_size_proportions
from .ratio import ratio_test
from .sequential import confidence_sequence, msprt_pvalue
from .srm import SRMResult, srm_test
from .stats import TwoSampleResult, non_inferiority_test, proportion_confint, proportion_test, welch_test

__all__ = [
    "stage", "ABAnalysis", "analyze", "cumulative_comparisons", "expected_loss", "prob_beat_control", "CupedResult",
    "cuped_test", "holdout_experiments", "incrementality", "daily_cumulative_statistics", "sufficient_statistics",
    "unit_outcomes", "adjust_pvalues", "benjamini_hochberg", "holm", "plot_cumulative_lift", "plot_forest",
    "achieved_power", "mde", "sample_size_means", "sample_size_per_arm", "sample_size_proportions", "ratio_test",
    "confidence_sequence", "msprt_pvalue", "SRMResult", "srm_test", "TwoSampleResult", "non_inferiority_test",
    "proportion_confint", "proportion_test", "welch_test",
]
