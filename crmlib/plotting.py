"""Shared figure style for the reports: a readable default and a CJK-capable font when one exists.

Store and city names in Chinese exports render as empty boxes with matplotlib's default DejaVu Sans.
:func:`use_report_style` puts a CJK font first in the sans-serif list when the machine has one
(Noto Sans CJK SC, WenQuanYi Micro Hei, ...); otherwise labels stay in DejaVu Sans and a warning says
which Debian package to install (``fonts-noto-cjk`` or ``fonts-wqy-microhei``).
"""

from __future__ import annotations

import warnings

import matplotlib

__all__ = ["use_report_style", "CJK_FONTS"]

CJK_FONTS = ("Noto Sans CJK SC", "WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "Source Han Sans SC",
             "SimHei", "Microsoft YaHei", "PingFang SC")


def use_report_style(*, warn_without_cjk: bool = False) -> str | None:
    """Set report rcParams; return the CJK font family in use, or None."""
    from matplotlib import font_manager

    matplotlib.rcParams.update({
        "figure.figsize": (8, 4.2), "figure.dpi": 100, "savefig.bbox": "tight",
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
        "axes.titleweight": "bold", "axes.titlesize": 12,
    })
    installed = {f.name for f in font_manager.fontManager.ttflist}
    cjk = next((name for name in CJK_FONTS if name in installed), None)
    if cjk:
        matplotlib.rcParams["font.sans-serif"] = [cjk, "DejaVu Sans"]
    elif warn_without_cjk:
        warnings.warn("no CJK font found: Chinese labels will show as boxes "
                      "(apt-get install fonts-wqy-microhei, then delete matplotlib's font cache)",
                      stacklevel=2)
    return cjk
