"""Stage 3: journeys, multi-touch attribution, ROI tables, media-mix model and budget reallocation.

Modules: :mod:`~crmlib.roi.paths` (the path-table convention), :mod:`~crmlib.roi.journeys` (journeys in
the engine), :mod:`~crmlib.roi.heuristics`, :mod:`~crmlib.roi.markov`, :mod:`~crmlib.roi.shapley`,
:mod:`~crmlib.roi.roi_table`, :mod:`~crmlib.roi.mmm`, :mod:`~crmlib.roi.budget`,
:mod:`~crmlib.roi.plotting`, :mod:`~crmlib.roi.messages` (stored English text shown in the run's language)
and :mod:`~crmlib.roi.stage` (notebook cells).
"""

from crmlib.roi.budget import BudgetResult, reallocate_budget
from crmlib.roi.heuristics import first_touch, last_touch, linear, position_based, time_decay
from crmlib.roi.journeys import JourneyResult, build_journeys
from crmlib.roi.markov import MarkovAttribution
from crmlib.roi.mmm import MediaMixModel, weekly_totals
from crmlib.roi.paths import make_path_table
from crmlib.roi.roi_table import MODELS, attribute_all, channel_costs, model_disagreement, roi_table
from crmlib.roi.shapley import ShapleyAttribution, shapley_values

__all__ = [
    "BudgetResult",
    "reallocate_budget",
    "first_touch",
    "last_touch",
    "linear",
    "position_based",
    "time_decay",
    "JourneyResult",
    "build_journeys",
    "MarkovAttribution",
    "MediaMixModel",
    "weekly_totals",
    "make_path_table",
    "MODELS",
    "attribute_all",
    "channel_costs",
    "model_disagreement",
    "roi_table",
    "ShapleyAttribution",
    "shapley_values",
]
