"""Text the ROI stage stores in English in its tables and the page shows in the run's language.

The stage's tables are data products that other code reads (the run page tests ``mmm.reason`` for
``"not modelled"``), so the notes, conventions, reasons and caveats written into them stay English.
Each is a catalog message (marked with ``N_`` where it is defined), formatted with its values when
stored; :func:`recorded_text` reads a stored text back through those templates and returns the
translation with the same values, so the page can say it in Chinese without the table changing.
"""

from __future__ import annotations

import functools

from crmlib.i18n import N_, translate_filled

__all__ = ["recorded_text", "NOT_IDENTIFIED", "NOTHING_IDENTIFIED", "NOTES"]

#: an unidentified channel's verdict on the page: ``{reason}`` is one of :data:`crmlib.roi.mmm.REASONS`
NOT_IDENTIFIED = N_("not identified by this data: {reason}")
#: added to the budget method when no channel is identified (``{method}``: a :data:`crmlib.roi.budget.METHODS`)
NOTHING_IDENTIFIED = N_("{method}; no channel is identified by the data, so nothing moves")
#: the data caveats of the ROI table (``roi_summary.json`` ``notes``)
NOTES = {
    "no_spend_table": N_("no spend table: cost is the touch-level cost only"),
    "touch_cost": N_("no spend rows for {channels}: their cost is the touch-level cost"),
    "no_cost": N_("no cost in the period: ROI, ROAS, CPA and CAC are undefined (null)"),
}


@functools.lru_cache(maxsize=1)
def _templates() -> tuple[tuple[str, ...], dict[str, frozenset]]:
    """Every stored template with a value in it, and which of its values are themselves stored messages
    (the others - numbers, channel names, the optimiser's words - are shown as they are)."""
    from crmlib.roi.budget import METHODS, NOTHING_MOVES
    from crmlib.roi.mmm import CONVENTION, REASONS
    from crmlib.roi.roi_table import CONVENTIONS

    nested = {REASONS["not_modelled"]: {"why"}, NOT_IDENTIFIED: {"reason"}, NOTHING_IDENTIFIED: {"method"}}
    candidates = [*REASONS.values(), CONVENTION, NOTHING_MOVES, *METHODS.values(), *CONVENTIONS.values(),
                  NOT_IDENTIFIED, NOTHING_IDENTIFIED, *NOTES.values()]
    templates = tuple(t for t in candidates if "{" in t)
    return templates, {t: frozenset(nested.get(t, ())) for t in templates}


def recorded_text(text):
    """``text``, stored in English by the ROI stage, in the run's language (unknown text as it is).

    A message without values is looked up as it is; one with values is matched against the stored
    templates and its translation formatted with the same values (:func:`crmlib.i18n.translate_filled`).
    """
    return translate_filled(text, *_templates())
