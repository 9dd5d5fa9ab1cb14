"""Shared figure style for the reports: a CJK-capable font, laptop-sized figures, one colour per name.

Fonts
    Channel, campaign, store and city names in Chinese exports render as empty boxes with matplotlib's
    default DejaVu Sans. The runtime dependency ``noto-cjk-sans-otc`` (SIL Open Font License 1.1, so
    charts drawn with it can be published and the font redistributed) ships Google's Noto Sans CJK
    collection; :func:`use_report_style` registers that file with matplotlib (no system fonts, no root,
    no font cache to clear) and asks for its Simplified-Chinese face, "Noto Sans CJK SC", by name: the
    collection's first face is the Japanese one, whose glyph forms differ for some hanzi. A CJK font
    already installed on the machine is used when the package is missing; with neither, one
    :class:`CJKFontMissing` warning is raised per process (and recorded for the stage when the caller
    says where) instead of a crash.

Sizes
    :data:`FIGURE_SIZE` x :data:`FIGURE_DPI` keep a default chart at most :data:`MAX_FIGURE_PX` wide, so
    a chart and the page margin fit a 1,400 px laptop screen; :func:`figure_size` and
    :func:`fit_to_page` keep wider requests inside that width, and :func:`page_dpi` the saved image when
    long labels reach past the figure's edge.

Colours
    :func:`color_for` gives one colour per name and family on every chart of a run and across runs: a
    fixed table for the RFM segments (green for the best customers through orange for those at risk to
    grey for the lost) and for the usual channel names, English or Chinese; any other name takes a
    slot of a colour-blind-safe palette (Okabe-Ito, then Paul Tol's muted colours) chosen by a hash of
    the name, which does not depend on the other names or on the run. :func:`colors_for` gives the
    colours of the names drawn together on one chart: known names keep their table colour, and when
    two other names hash to the same slot the later one in sorted order takes the next free slot, so
    the names on one chart never share a colour.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib

__all__ = [
    "use_report_style",
    "cjk_font_path",
    "CJKFontMissing",
    "CJK_FAMILY",
    "CJK_FONTS",
    "FIGURE_SIZE",
    "FIGURE_DPI",
    "MAX_FIGURE_PX",
    "figure_size",
    "fit_to_page",
    "page_dpi",
    "color_for",
    "colors_for",
    "PALETTE",
    "SEGMENT_COLORS",
    "CHANNEL_COLORS",
    "OTHER_COLOR",
]

CJK_FAMILY = "Noto Sans CJK SC"
# installed system fonts tried when the bundled package is missing, best first
CJK_FONTS = (CJK_FAMILY, "Source Han Sans SC", "WenQuanYi Micro Hei", "WenQuanYi Zen Hei",
             "Noto Sans SC", "SimHei", "Microsoft YaHei", "PingFang SC")

# 8 in x 110 dpi (the report's PNG resolution) = 880 px: a chart and the page margin fit 1,400 px
FIGURE_SIZE = (8.0, 4.5)
FIGURE_DPI = 110
MAX_FIGURE_PX = 900

# Okabe & Ito (2008) without black, then Paul Tol's "muted" colours that differ from those; yellow
# last because thin lines in it are hard to see on white
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#332288", "#882255",
           "#44AA99", "#999933", "#AA4499", "#F0E442")
OTHER_COLOR = "#999999"  # "other", unknown and missing names

# RFM segments (crmlib.segmentation.rfm.SEGMENTS): greens for the best, blues for the new and
# promising, oranges and reds for those slipping away, greys for the lost
SEGMENT_COLORS = {
    "Champions": "#1B7837",
    "Loyal": "#5AAE61",
    "Potential Loyalists": "#A6DBA0",
    "New": "#2166AC",
    "Promising": "#67A9CF",
    "Need Attention": "#F1B6DA",
    "About to Sleep": "#FDB863",
    "At Risk": "#E66101",
    "Can't Lose": "#B2182B",
    "Hibernating": "#878787",
}

# the usual channel names, English and Chinese, mapped onto the palette so a brand's channels keep
# their colour whatever else a run holds; names are compared case-insensitively with '-' and ' ' as '_'
_CHANNEL_SLOTS = {
    0: ("paid_search", "search", "sem", "搜索", "付费搜索", "百度"),
    1: ("social", "抖音", "douyin", "小红书", "社交", "社交媒体"),
    2: ("email", "edm", "邮件", "电子邮件"),
    3: ("display", "dsp", "展示广告", "信息流"),
    4: ("affiliate", "cps", "联盟", "联盟营销"),
    5: ("sms", "短信"),
    6: ("push", "app_push", "推送", "app推送"),
    7: ("微信", "wechat", "weixin", "公众号", "企业微信"),
    8: ("小程序", "mini_program", "miniprogram", "wechat_mini_program"),
    9: ("web", "官网", "网站", "website", "pc"),
    10: ("app", "手机app", "mobile_app"),
    11: ("store", "门店", "offline", "线下"),
}
CHANNEL_COLORS = {name: PALETTE[slot] for slot, names in _CHANNEL_SLOTS.items() for name in names}
_FIXED = {"segment": SEGMENT_COLORS, "channel": CHANNEL_COLORS}

_cjk_warned = False


class CJKFontMissing(UserWarning):
    """No CJK font could be found: Chinese labels in charts will show as empty boxes."""


def cjk_font_path() -> Path | None:
    """The Noto Sans CJK collection shipped by the ``noto-cjk-sans-otc`` package, or None."""
    try:
        import noto_cjk_sans_otc
    except ImportError:
        return None
    path = Path(str(noto_cjk_sans_otc.FONT_PATH))
    return path if path.is_file() else None


def _register_cjk_font() -> str | None:
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    if CJK_FAMILY not in installed:
        path = cjk_font_path()
        if path is not None:
            # a .ttc registers each face (JP, KR, SC, TC, HK and the Mono ones) under its own family
            font_manager.fontManager.addfont(str(path))
            installed = {f.name for f in font_manager.fontManager.ttflist}
    return next((name for name in CJK_FONTS if name in installed), None)


def use_report_style(*, where: Any = None, stage: str | None = None, warn_without_cjk: bool = True) -> str | None:
    """Set the report rcParams (size, resolution, font, colours); return the CJK family in use, or None.

    Parameters
    ----------
    where : Engine, RunContext or path, optional
        Where to record the missing-font warning (``<run_dir>/warnings.jsonl``) so the run page shows it.
    stage : str, optional
        The stage name the recorded warning carries.
    warn_without_cjk : bool
        Raise one :class:`CJKFontMissing` warning per process when no CJK font is found.
    """
    from cycler import cycler

    # titles in the regular weight: the CJK collection has no bold face, and asking for one logs a
    # font-fallback warning on every chart
    matplotlib.rcParams.update({
        "figure.figsize": FIGURE_SIZE, "figure.dpi": 100, "savefig.dpi": FIGURE_DPI, "savefig.bbox": "tight",
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
        "axes.titleweight": "normal", "axes.titlesize": 13, "axes.prop_cycle": cycler(color=list(PALETTE)),
    })
    cjk = _register_cjk_font()
    if cjk:
        matplotlib.rcParams["font.family"] = "sans-serif"
        matplotlib.rcParams["font.sans-serif"] = [cjk, "DejaVu Sans"]
        return cjk
    from crmlib.i18n import N_, _

    # the run page lists this warning, so it is written in the report's language
    message = _("No Chinese-capable font found: Chinese channel, campaign or city names in the charts show as "
                "empty boxes. Reinstall the project (pip install -e .) to get the noto-cjk-sans-otc package.")
    global _cjk_warned
    if warn_without_cjk and not _cjk_warned:
        _cjk_warned = True
        warnings.warn(message, CJKFontMissing, stacklevel=2)
    if where is not None:
        from crmlib.status import record_warning

        record_warning(where, stage or "report", N_("chart font"), message)
    return None


def figure_size(width: float | None = None, height: float | None = None) -> tuple[float, float]:
    """A figure size in inches no wider than :data:`MAX_FIGURE_PX` at :data:`FIGURE_DPI`.

    A wider request is scaled down with its aspect ratio kept.
    """
    w = FIGURE_SIZE[0] if width is None else float(width)
    h = FIGURE_SIZE[1] if height is None else float(height)
    limit = MAX_FIGURE_PX / FIGURE_DPI
    if w > limit:
        w, h = limit, h * limit / w
    return (w, h)


def fit_to_page(fig: Any, dpi: float = FIGURE_DPI) -> Any:
    """Shrink ``fig`` (keeping its aspect ratio) when at ``dpi`` it would be wider than :data:`MAX_FIGURE_PX`."""
    w, h = fig.get_size_inches()
    if w * dpi > MAX_FIGURE_PX:
        scale = MAX_FIGURE_PX / (w * dpi)
        fig.set_size_inches(w * scale, h * scale)
    return fig


def page_dpi(fig: Any, dpi: float = FIGURE_DPI) -> float:
    """The resolution at which ``fig``, saved with ``bbox_inches="tight"``, is at most :data:`MAX_FIGURE_PX` wide.

    ``dpi`` unless the tight box (long tick labels can reach past the figure's edge) is wider than
    that at ``dpi``; then the resolution that makes it fit. Pass the result to ``savefig(dpi=...)``.
    """
    fig.canvas.draw()  # tick labels are laid out only when drawn
    width_in = fig.get_tightbbox(fig.canvas.get_renderer()).width  # inches
    # 3 % spare: text is laid out again at the new resolution and its box can round a few pixels wider
    return float(dpi) if width_in * dpi <= MAX_FIGURE_PX else MAX_FIGURE_PX / width_in * 0.97


def _key(name: str) -> str:
    return str(name).strip().casefold().replace("-", "_").replace(" ", "_")


def _hash_slot(name: str) -> int:
    # sha256, not hash(): Python salts str hashes per process, and the colour must not change
    return int.from_bytes(hashlib.sha256(_key(name).encode("utf-8")).digest()[:8], "big") % len(PALETTE)


def color_for(name: Any, family: str = "channel") -> str:
    """The colour of ``name`` on every chart: a fixed one for known segments and channels, else a hashed slot.

    Parameters
    ----------
    name : str
        A channel, campaign, segment, variant, ... name. None, NaN and "" get :data:`OTHER_COLOR`.
    family : {"channel", "segment"} or any other word
        The table to look in first; any family hashes names it does not know.
    """
    if name is None or (isinstance(name, float) and name != name) or str(name).strip() == "":
        return OTHER_COLOR
    fixed = _FIXED.get(family, {})
    if str(name) in fixed:
        return fixed[str(name)]
    keyed = {_key(k): v for k, v in fixed.items()}
    if _key(name) in keyed:
        return keyed[_key(name)]
    if _key(name) in ("other", "others", "其他", "unknown", "未知", "(none)", "none"):
        return OTHER_COLOR
    return PALETTE[_hash_slot(str(name))]


def colors_for(names: Iterable[Any], family: str = "channel") -> dict[Any, str]:
    """The colours of the names drawn together on one chart, each name its :func:`color_for` colour
    unless an earlier name (known names first, then sorted) already took it: then the next free slot.

    Returns a dict name -> colour in the order of ``names``.
    """
    names = list(dict.fromkeys(names))
    preferred = {n: color_for(n, family) for n in names}
    fixed = _FIXED.get(family, {})
    known = {_key(k) for k in fixed}
    ordered = sorted(names, key=lambda n: (n is None or _key(n) not in known, _key(n) if n is not None else ""))
    taken: set[str] = set()
    out: dict[Any, str] = {}
    for n in ordered:
        colour = preferred[n]
        if colour in taken and colour != OTHER_COLOR:
            start = PALETTE.index(colour) if colour in PALETTE else 0
            free = [PALETTE[(start + i) % len(PALETTE)] for i in range(1, len(PALETTE) + 1)]
            colour = next((c for c in free if c not in taken), colour)
        taken.add(colour)
        out[n] = colour
    return {n: out[n] for n in names}
