"""The presentation layer: how every number on every page is written.

Report functions compute nothing; they read a stage's tables and format them here, so a page never
shows ``14339487.530000158`` next to ``14.34M``, a share as ``0.122`` or a count as ``5,005.000``.

Conventions (one per kind of number):

========== ====================================================== ==========================
kind       rule                                                   examples
========== ====================================================== ==========================
money      currency code first, thousands separators; no          ``CNY 14,031,108``,
           decimals from 1,000 up, two below                      ``CNY 12.50``
count      a whole number with thousands separators               ``5,005``
percent    a fraction shown as %, one decimal (two below 1 %)     ``12.2%``, ``0.35%``
pvalue     two significant figures; below 0.001 as ``< 0.001``    ``0.012``, ``< 0.001``
ratio      two decimals (ROI, ROAS, LTV:CAC, lift multiples)      ``3.21``
number     a measured quantity: three significant figures,        ``4.41``, ``0.793``,
           thousands separators from 1,000 up                     ``12,300``
========== ====================================================== ==========================

Missing values (None, NaN) are written as an empty string, or ``missing`` where the caller asks.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import pandas as pd

__all__ = [
    "KINDS",
    "fmt",
    "fmt_money",
    "fmt_count",
    "fmt_percent",
    "fmt_pvalue",
    "fmt_ratio",
    "fmt_number",
    "fmt_label",
    "format_frame",
]


def _missing(x: Any) -> bool:
    if x is None or x is pd.NA or x is pd.NaT:
        return True
    try:
        return bool(isinstance(x, (float, np.floating)) and math.isnan(x))
    except TypeError:
        return False


def fmt_money(x: Any, currency: str | None = None, *, na: str = "") -> str:
    """``CNY 14,031,108`` (no decimals from 1,000 up), ``CNY 12.50`` below; negative as ``-CNY 40``."""
    if _missing(x):
        return na
    x = float(x)
    if not math.isfinite(x):
        return na
    body = f"{abs(x):,.0f}" if abs(x) >= 1000 else f"{abs(x):,.2f}"
    sign = "-" if x < 0 and body.strip("0.,") else ""
    return f"{sign}{currency} {body}" if currency else f"{sign}{body}"


def fmt_count(x: Any, *, na: str = "") -> str:
    """``5,005``: a whole number with thousands separators."""
    if _missing(x):
        return na
    return f"{int(round(float(x))):,}"


def fmt_percent(x: Any, *, digits: int | None = None, signed: bool = False, na: str = "") -> str:
    """A fraction as a percentage: ``0.122`` -> ``12.2%``; below 1 % two decimals (``0.35%``).

    ``signed=True`` writes a plus sign on positive values (lifts: ``+20.7%``).
    """
    if _missing(x):
        return na
    value = float(x) * 100
    if not math.isfinite(value):
        return na
    if digits is None:
        digits = 2 if 0 < abs(value) < 1 else 1
    text = f"{value:,.{digits}f}%"
    return f"+{text}" if signed and value > 0 else text


def fmt_pvalue(p: Any, *, na: str = "") -> str:
    """Two significant figures; below 0.001 as ``< 0.001``."""
    if _missing(p):
        return na
    p = float(p)
    if p < 0.001:
        return "< 0.001"
    return f"{float(f'{p:.2g}'):g}" if p < 0.1 else f"{p:.2f}"


def fmt_ratio(x: Any, *, na: str = "") -> str:
    """Two decimals (ROI, ROAS, LTV:CAC): ``3.21``; thousands separated (``6,202.99``)."""
    if _missing(x):
        return na
    x = float(x)
    return f"{x:,.2f}" if math.isfinite(x) else na


def fmt_number(x: Any, *, na: str = "") -> str:
    """A measured quantity with three significant figures (``4.41``, ``0.793``, ``12,300``)."""
    if _missing(x):
        return na
    x = float(x)
    if not math.isfinite(x):
        return na
    if x == 0:
        return "0"
    if abs(x) >= 1000:
        return f"{float(f'{x:.3g}'):,.0f}"
    return f"{float(f'{x:.3g}'):g}"


def fmt_label(x: Any, *, na: str = "") -> str:
    """A code the pipeline writes in English (segment, tier, verdict, model) in the report's language.

    The code must be marked for the catalog where it is defined (``N_("Champions")``); a value the
    catalog does not know (a channel or campaign name from the user's data) is shown as it is.
    """
    from crmlib.i18n import _

    if _missing(x):
        return na
    return _(str(x))


#: kind name -> formatter taking (value, **options)
KINDS: dict[str, Callable[..., str]] = {
    "money": fmt_money,
    "count": fmt_count,
    "percent": fmt_percent,
    "pvalue": fmt_pvalue,
    "ratio": fmt_ratio,
    "number": fmt_number,
    "label": fmt_label,
}


def fmt(x: Any, kind: str, **options: Any) -> str:
    """Format ``x`` as one of :data:`KINDS` (``fmt(0.12, "percent")`` -> ``12.0%``)."""
    try:
        formatter = KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown number kind {kind!r}; kinds are {', '.join(KINDS)}") from None
    return formatter(x, **options)


def format_frame(df: pd.DataFrame, kinds: dict[str, str], *, currency: str | None = None) -> pd.DataFrame:
    """A copy of ``df`` whose columns named in ``kinds`` (column -> kind) are formatted as text.

    Columns not named stay as they are (text columns: names, segments, channels). ``currency`` is used
    for the money columns.
    """
    out = df.copy()
    for col, kind in kinds.items():
        if col not in out.columns:
            continue
        options = {"currency": currency} if kind == "money" else {}
        out[col] = [fmt(v, kind, **options) for v in out[col]]
    return out
