"""Publishing: notebook -> stakeholder HTML, the run's ``index.html`` and ``reports/index.html``.

Stakeholder HTML hides code, prompts, the ``parameters``/``injected-parameters`` cells and stderr
(warnings, kernel noise); tracebacks are cut to their one-line error so a failed stage shows what
went wrong without dumping internals. Reports carry counts and aggregates, never people.
"""

from __future__ import annotations

import datetime as dt
import functools
import html
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crmlib.i18n import N_, _, translate_markdown

__all__ = ["render_notebook", "write_run_index", "write_reports_index", "run_header", "show", "Finding",
           "key_findings", "escape_markdown", "write_text_atomic", "read_run_table", "read_run_json", "neutralize_formula", "write_people_csv", "figure", "figure_html", "ReportTable",
           "stage_label", "kind_label"]

#: Stage names (``crmlib.runner.STAGES``) as the run page and the reports index call them; the English
#: label is the stage's code, so English pages read as the console does.
_STAGE_LABELS = {"ingest": N_("ingest"), "segmentation": N_("segmentation"), "roi": N_("roi"),
                 "ab_tests": N_("ab_tests")}
#: Input kinds (``crmlib.params.KINDS``) as the pages name them.
_KIND_LABELS = {"contacts": N_("contacts"), "orders": N_("orders"), "events": N_("events"),
                "touchpoints": N_("touchpoints"), "spend": N_("spend"), "experiments": N_("experiments"),
                "surveys": N_("surveys"), "order_lines": N_("order_lines")}
#: Where a run's as-of date came from (``tables/as_of.json``'s ``source``).
_AS_OF_SOURCES = {"params": N_("params"), "latest order": N_("latest order")}


def stage_label(stage: Any) -> str:
    """A stage's name in the report's language (``segmentation`` -> ``客群细分``); other names as they are."""
    name = str(stage)
    return _(_STAGE_LABELS[name]) if name in _STAGE_LABELS else name


def kind_label(kind: Any) -> str:
    """An input kind in the report's language (``touchpoints`` -> ``触点``); other names as they are."""
    name = str(kind)
    return _(_KIND_LABELS[name]) if name in _KIND_LABELS else name

_HIDDEN_TAGS = ("parameters", "injected-parameters", "remove-cell")

_CSS = """
body{font-family:-apple-system,'Segoe UI','Noto Sans CJK SC','WenQuanYi Micro Hei','CRM CJK',Helvetica,Arial,sans-serif;
margin:2rem auto;max-width:1100px;color:#1f2328;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}.sub{color:#57606a;margin-top:0}
table{border-collapse:collapse;margin:1rem 0;font-size:.92rem}
th,td{border-bottom:1px solid #d0d7de;padding:.35rem .7rem;text-align:left}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1a7f37;font-weight:600}.failed{color:#cf222e;font-weight:600}.skipped{color:#9a6700}
.ok_with_warnings{color:#9a6700;font-weight:600}.running{color:#57606a}
.warning{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:.5rem .8rem}
pre.error{background:#fff5f5;border:1px solid #ffcecb;padding:.6rem;white-space:pre-wrap;font-size:.85rem}
.kpis{display:flex;gap:1rem;flex-wrap:wrap;margin:1rem 0}
.kpi{border:1px solid #d0d7de;border-radius:6px;padding:.6rem 1rem;min-width:9rem}
.kpi b{display:block;font-size:1.35rem}.kpi span{color:#57606a;font-size:.85rem}
tr.failed-run td{background:#fff5f5}
ol.findings{padding-left:1.4rem;margin:.6rem 0 1.2rem}ol.findings li{margin:.15rem 0 .75rem;line-height:1.4}
ol.findings .act{display:block;margin-top:.15rem}ol.findings .act b{color:#0969da}
ol.findings .src{display:block;font-size:.85rem;color:#57606a}
.kpis .kpi{flex:0 0 12.5rem}.kpi .k{display:block;color:#1f2328;font-weight:600;font-size:.85rem}
.kpi .what{display:block;color:#57606a;font-size:.78rem;max-width:13rem}
.kpi .chg{display:block;font-size:.8rem}.chg.good{color:#1a7f37}.chg.bad{color:#cf222e}.chg.flat{color:#57606a}
svg.spark{display:block;margin:.2rem 0}
.recon{display:flex;gap:2rem;flex-wrap:wrap}.recon table{margin:.4rem 0}
.recon td.total{font-weight:600}.notes{color:#57606a;font-size:.85rem}
"""


def _page(title: str, body: str) -> str:
    from crmlib.i18n import language

    lang = html.escape(language(), quote=True)
    return (f"<!DOCTYPE html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{cjk_font_css(title + body)}{_CSS}</style></head>"
            f"<body>{body}</body></html>\n")


# -- notebooks -> HTML ---------------------------------------------------------------------------------
def _clean_for_stakeholders(nb: Any) -> Any:
    """Drop stderr streams and bare object reprs, shorten tracebacks, in place.

    A result with nothing but ``text/plain`` is the repr of a Python object (``IngestSummary(...)``,
    ``<BetaGeoFitter ...>``, a dict) that a cell left as its value: never meant for a stakeholder. What
    a page shows is displayed as HTML, Markdown or an image. The executed notebook keeps everything.
    """
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        kept = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                continue
            if (output.get("output_type") in ("execute_result", "display_data")
                    and set(output.get("data", {})) <= {"text/plain"}):
                continue
            if output.get("output_type") == "error":
                output["traceback"] = [f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"]
            kept.append(output)
        cell["outputs"] = kept
    return nb


#: nbconvert template for stage pages: the lab look without CDN scripts, plus the navigation bar.
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

# 'CRM CJK' leads the page stacks: it holds only the page's Chinese glyphs, so Latin text still falls through
# to system-ui; behind system-ui, Chromium on a machine without a CJK font drew some Chinese runs as boxes
_NAV_CSS = """
.crm-nav{display:flex;flex-wrap:wrap;gap:.3rem 1.2rem;align-items:baseline;padding:.55rem 1rem;margin:0 0 1rem;
border-bottom:1px solid #d0d7de;background:#f6f8fa;font-size:.95rem;font-family:var(--jp-ui-font-family)}
:root{--jp-ui-font-family:'CRM CJK',system-ui,-apple-system,blinkmacsystemfont,'Segoe UI',helvetica,arial,sans-serif;
--jp-content-font-family:'CRM CJK',system-ui,-apple-system,blinkmacsystemfont,'Segoe UI',helvetica,arial,sans-serif;
--jp-code-font-family:menlo,consolas,'DejaVu Sans Mono','CRM CJK',monospace}
.crm-nav a{color:#0969da;text-decoration:none}.crm-nav a:hover{text-decoration:underline}
.crm-nav .crm-nav-current{font-weight:600;color:#1f2328}
.crm-nav a.crm-nav-run{font-weight:600}
figure.crm-figure img{display:block}
@media print{.crm-nav{display:none}}
"""


#: Characters drawn from the embedded CJK font: CJK punctuation, kana, hanzi, full-width forms.
_CJK_CHARS = re.compile("[\u2e80-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef]")
#: Family name of the embedded subset; page style sheets list it before the generic family.
CJK_WEB_FAMILY = "CRM CJK"


def cjk_font_css(text: str) -> str:
    """An ``@font-face`` rule embedding the Chinese glyphs ``text`` uses, or ``""`` when it uses none.

    A page opened on a machine without a Chinese font (a Linux server, a fresh container) would show
    channel and city names as boxes. The glyphs come from the Noto Sans CJK SC face of the font the
    charts use (the ``noto-cjk-sans-otc`` package), cut down to the characters on the page (a few KB
    as WOFF) and embedded as a ``data:`` URL, so the page still loads nothing from the network.
    """
    chars = "".join(sorted(set(_CJK_CHARS.findall(text))))
    return _cjk_font_face(chars) if chars else ""


@functools.lru_cache(maxsize=32)
def _cjk_font_face(chars: str) -> str:
    import base64
    import io

    from fontTools import subset
    from fontTools.ttLib import TTCollection, TTFont

    from crmlib.plotting import CJK_FAMILY, cjk_font_path

    path = cjk_font_path()
    if path is None:
        return ""
    number = 0
    if path.suffix.lower() in (".ttc", ".otc"):  # the collection's first face is the Japanese one
        names = [f["name"].getDebugName(1) for f in TTCollection(str(path), lazy=True).fonts]
        number = names.index(CJK_FAMILY) if CJK_FAMILY in names else 0
    font = TTFont(str(path), fontNumber=number)
    options = subset.Options()
    options.flavor = "woff"  # zlib-compressed; WOFF2 would need brotli
    options.hinting = False
    options.desubroutinize = True
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=chars)
    subsetter.subset(font)
    buffer = io.BytesIO()
    font.save(buffer)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    # one regular face: bold Chinese text is then drawn with synthetic bold, as the browser does for any font
    return (f"@font-face{{font-family:'{CJK_WEB_FAMILY}';font-style:normal;font-weight:400;"
            f"src:url(data:font/woff;base64,{data}) format('woff')}}")


_STYLE_BLOCK = re.compile(r"(<style[^>]*>)(.*?)(</style>)", re.S | re.I)
_CLASS_ATTR = re.compile(r"""\bclass\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.I)
_NEGATION = re.compile(r":not\([^()]*(?:\([^()]*\)[^()]*)*\)")
_CLASS_NAME = re.compile(r"\.(-?[_a-zA-Z][-_a-zA-Z0-9]*)")


def _drop_unused_css(page: str) -> str:
    """``page`` without the style rules that match no element of it.

    JupyterLab's style sheet (about 240 KB) styles the whole JupyterLab application; a report page uses a
    few dozen of its classes. A rule is kept when one of its selectors names only classes present on the
    page (classes inside ``:not(...)`` do not count: they do not have to be present for the rule to apply);
    rules without classes (elements, ``:root`` variables), ``@font-face`` and ``@keyframes`` are kept.
    The page has no scripts, so no class can appear after it is loaded.
    """
    try:
        import tinycss2
    except ImportError:  # installed with nbconvert (bleach[css]); without it the page is only larger
        return page
    outside_styles = _STYLE_BLOCK.sub("", page)
    classes = {name for match in _CLASS_ATTR.finditer(outside_styles)
               for name in (match.group(1) or match.group(2) or match.group(3) or "").split()}

    def used(selector: str) -> bool:
        return all(name in classes for name in _CLASS_NAME.findall(_NEGATION.sub("", selector)))

    def keep(rules: list) -> str:
        out = []
        for rule in rules:
            if rule.type == "qualified-rule":
                selectors = [sel for sel in tinycss2.serialize(rule.prelude).split(",") if sel.strip()]
                if any(used(sel) for sel in selectors):
                    out.append(rule.serialize())
            elif rule.type == "at-rule" and rule.lower_at_keyword in ("media", "supports") and rule.content:
                inner = keep(tinycss2.parse_rule_list(rule.content, skip_comments=True, skip_whitespace=True))
                if inner:
                    out.append(f"@{rule.at_keyword}{tinycss2.serialize(rule.prelude)}{{{inner}}}")
            elif rule.type == "at-rule":
                out.append(rule.serialize())
        return "\n".join(out)

    def purge(match: re.Match) -> str:
        css = match.group(2)
        rules = tinycss2.parse_stylesheet(css, skip_comments=True, skip_whitespace=True)
        if any(rule.type == "error" for rule in rules):  # a sheet we cannot read is kept as it is
            return match.group(0)
        return match.group(1) + keep(rules) + match.group(3)

    return _drop_unused_variables(_STYLE_BLOCK.sub(purge, page))


_VAR_USE = re.compile(r"var\(\s*(--[-_a-zA-Z0-9]+)")


def _drop_unused_variables(page: str) -> str:
    """``page`` without the CSS custom properties (``--jp-icon-...``) that nothing on it uses.

    JupyterLab's theme defines some 90 KB of variables, most of them icons of the application. A
    variable is kept when a declaration or inline style uses it, directly or through another variable.
    """
    import tinycss2

    sheets = [tinycss2.parse_stylesheet(m.group(2), skip_comments=True, skip_whitespace=True)
              for m in _STYLE_BLOCK.finditer(page)]
    defined: dict[str, list[str]] = {}
    used = set(_VAR_USE.findall(_STYLE_BLOCK.sub("", page)))  # inline style attributes

    def declarations(rule: Any) -> list:
        return tinycss2.parse_declaration_list(rule.content, skip_comments=True, skip_whitespace=True)

    def each_rule(rules: list):
        for rule in rules:
            if rule.type == "qualified-rule":
                yield rule
            elif rule.type == "at-rule" and rule.content and rule.lower_at_keyword in ("media", "supports"):
                yield from each_rule(tinycss2.parse_rule_list(rule.content, skip_comments=True,
                                                              skip_whitespace=True))

    for rules in sheets:
        for rule in each_rule(rules):
            for decl in declarations(rule):
                if decl.type != "declaration":
                    continue
                value = tinycss2.serialize(decl.value)
                if decl.name.startswith("--"):
                    defined.setdefault(decl.name, []).append(value)
                else:
                    used.update(_VAR_USE.findall(value))
            used.update(_VAR_USE.findall(tinycss2.serialize(rule.prelude)))
    pending = list(used)
    while pending:  # variables used by used variables
        for value in defined.get(pending.pop(), []):
            for name in _VAR_USE.findall(value):
                if name not in used:
                    used.add(name)
                    pending.append(name)

    def rewrite(match: re.Match) -> str:
        rules = tinycss2.parse_stylesheet(match.group(2), skip_comments=True, skip_whitespace=True)
        out = []
        for rule in rules:
            if rule.type == "qualified-rule" and tinycss2.serialize(rule.prelude).strip() == ":root":
                kept = [d for d in declarations(rule) if d.type == "declaration"
                        and (not d.name.startswith("--") or d.name in used)]
                body = ";".join(f"{d.name}:{tinycss2.serialize(d.value)}{'!important' if d.important else ''}"
                                for d in kept)
                if body:
                    out.append(f":root{{{body}}}")
            else:
                out.append(rule.serialize())
        return match.group(1) + "\n".join(out) + match.group(3)

    return _STYLE_BLOCK.sub(rewrite, page)


def stage_nav(pages: list[tuple[str, str]], current: str) -> list[dict]:
    """The links of a stage page's navigation bar: the run page first, then every stage page of the run.

    Parameters
    ----------
    pages : list of (file name, label)
        The run's stage pages in run order, only those that exist (``02_segmentation.html``, ...).
    current : str
        The file name of the page the bar is for; it is shown as text, not as a link.
    """
    links = [{"href": "index.html", "text": _("Run overview"), "current": False, "run": True}]
    links += [{"href": href, "text": label, "current": href == current, "run": False} for href, label in pages]
    return links


def render_notebook(executed: str | Path, html_path: str | Path, *, title: str,
                    nav: list[tuple[str, str]] | None = None, language: str = "en") -> Path:
    """Render an executed notebook to stakeholder HTML (no code, prompts, parameters or stderr).

    The page is self-contained: no script, style sheet or font comes from the network (the ``crm``
    template drops the lab template's require.js, MathJax and mermaid links), images are embedded.

    Parameters
    ----------
    executed : path
        The executed ``.ipynb``.
    html_path : path
        Where to write the HTML.
    title : str
        The page title.
    nav : list of (file name, label), optional
        The run's stage pages (those that exist, in run order) for the bar at the top of the page,
        which also links to the run page ``index.html``. Without it the bar links to the run page only.
    language : str
        The report language (``run.language``), set as the page's ``lang`` so that browsers pick
        Chinese glyphs for ``zh-CN``.
    """
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    html_path = Path(html_path)
    nb = nbformat.read(str(executed), as_version=4)
    nb = _clean_for_stakeholders(nb)
    for cell in nb.cells:  # the notebook's Markdown is English; the page is in the run's language
        if cell.cell_type == "markdown":
            cell.source = translate_markdown(cell.source)
    tags = TagRemovePreprocessor(remove_cell_tags=_HIDDEN_TAGS, enabled=True)
    exporter = HTMLExporter(template_name="crm", extra_template_basedirs=[str(TEMPLATES_DIR)],
                            exclude_input=True, exclude_output_prompt=True, exclude_input_prompt=True)
    exporter.register_preprocessor(tags, enabled=True)
    resources = {"metadata": {"name": title}, "crm_css": "/*crm-cjk-font*/" + _NAV_CSS,
                 "crm_nav": stage_nav(list(nav or []), html_path.name),
                 "crm_nav_label": _("Pages of this run")}
    body, _resources = exporter.from_notebook_node(nb, resources=resources)
    # nbconvert's language_code accepts ISO 639-1 only ("zh", not "zh-CN") and validates it wrongly
    body = body.replace('<html lang="en">', f'<html lang="{html.escape(language)}">', 1)
    body = body.replace("/*crm-cjk-font*/", cjk_font_css(body), 1)
    body = _drop_unused_css(body)
    html_path.write_text(body, encoding="utf-8")
    return html_path


# -- charts -------------------------------------------------------------------------------------------
def _root_figure(fig_or_ax: Any) -> Any:
    """The matplotlib ``Figure`` behind a figure, sub-figure, axes, array of axes or seaborn grid."""
    from matplotlib.figure import Figure

    obj = fig_or_ax
    if isinstance(obj, (list, tuple)) or type(obj).__name__ == "ndarray":  # plt.subplots(2, 2)
        flat = list(getattr(obj, "flat", obj))
        if not flat:
            raise TypeError("report.figure got an empty list of axes")
        obj = flat[0]
    for _depth in range(5):  # Axes -> (SubFigure ->) Figure; a seaborn grid has .figure too
        if isinstance(obj, Figure):
            return obj
        obj = getattr(obj, "figure", None)
    raise TypeError(f"report.figure needs a matplotlib Figure or Axes, not {type(fig_or_ax).__name__}")


def figure_html(fig_or_ax: Any, *, title: str, caption: str, alt: str, dpi: int = 110) -> str:
    """The HTML ``<figure>`` that :func:`figure` displays; the matplotlib figure is closed.

    The image is a base64 PNG inside the page (no file beside it, nothing fetched), scaled down to the
    page width on a narrow screen. ``title``, ``caption`` and ``alt`` are HTML-escaped: they carry
    channel, segment and experiment names from the input data.
    """
    import base64
    import io

    import matplotlib.pyplot as plt

    fig = _root_figure(fig_or_ax)
    buffer = io.BytesIO()
    try:
        from crmlib.plotting import page_dpi  # long labels can widen the tight box past a laptop page

        fig.savefig(buffer, format="png", dpi=page_dpi(fig, dpi), bbox_inches="tight", facecolor="white")
    finally:
        plt.close(fig)  # otherwise the inline backend shows it a second time, without caption
    png = base64.b64encode(buffer.getvalue()).decode("ascii")
    e = html.escape
    return (f"<figure class='crm-figure' style='margin:1.2rem 0;max-width:100%'>"
            f"<figcaption style='margin-bottom:.4rem'>"
            f"<strong class='crm-figure-title' style='display:block;font-size:1.05rem'>{e(title)}</strong>"
            f"<span class='crm-figure-caption' style='color:#57606a'>{e(caption)}</span></figcaption>"
            f"<img src='data:image/png;base64,{png}' alt='{e(alt)}' style='max-width:100%;height:auto'>"
            f"</figure>")


def figure(fig_or_ax: Any, *, title: str, caption: str, alt: str, dpi: int = 110) -> None:
    """Display a matplotlib chart as an HTML ``<figure>``: takeaway title, caption, image with alt text.

    Call it instead of leaving a bare axes as a cell's output; it displays the chart itself (so it
    works inside a loop too) and closes the figure so the chart is not shown twice.

    Parameters
    ----------
    fig_or_ax : matplotlib Figure, Axes, array of Axes or seaborn grid
        The chart.
    title : str
        The sentence the chart supports, e.g. ``_("Email returns the most per yuan spent")``.
    caption : str
        How to read the chart (what bars, axes, whiskers mean; the data it covers).
    alt : str
        A text equivalent for readers who cannot see the image.
    dpi : int
        Pixels per inch of the embedded PNG.
    """
    from IPython.display import HTML, display

    display(HTML(figure_html(fig_or_ax, title=title, caption=caption, alt=alt, dpi=dpi)))


# -- the run's landing page --------------------------------------------------------------------------
def _sparkline(values: list[float], label: str) -> str:
    """A small inline SVG trend line over ``values`` (oldest first); empty below two points."""
    if len(values) < 2:
        return ""
    width, height, pad = 110, 26, 3
    low, high = min(values), max(values)
    # a run-to-run wobble below 0.5 % of the value is drawn flat, not stretched to the full height
    if high - low <= 0.005 * max(abs(high), abs(low)):
        low, high = low - 1.0, high + 1.0
    span = high - low
    step = (width - 2 * pad) / (len(values) - 1)
    points = [(pad + i * step, height - pad - (v - low) / span * (height - 2 * pad)) for i, v in enumerate(values)]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    e = html.escape
    return (f"<svg class='spark' width='{width}' height='{height}' viewBox='0 0 {width} {height}' role='img' "
            f"aria-label='{e(label, quote=True)}'><title>{e(label)}</title>"
            f"<polyline fill='none' stroke='#0969da' stroke-width='1.5' points='{path}'/>"
            f"<circle cx='{points[-1][0]:.1f}' cy='{points[-1][1]:.1f}' r='2.5' fill='#0969da'/></svg>")


def _kpis(kpis: list[Any], currency: str) -> str:
    """The KPI panel: value, what it counts, change against the previous successful run, trend line.

    ``kpis`` are :class:`crmlib.brief.Kpi`; a KPI the tables could not give (value None) is left out.
    """
    from crmlib.present import fmt, fmt_percent

    e = html.escape
    cards = []
    for k in kpis:
        if k.value is None:
            continue
        options = {"currency": currency} if k.kind == "money" else {}
        value = fmt(k.value, k.kind, **options)
        change = ""
        if k.history:
            previous = k.history[-1]
            # a change too small to show in the value's own format is no change
            same = fmt(previous, k.kind, **options) == value
            direction = 0 if same else (k.value > previous) - (k.value < previous)
            arrow = {1: "▲", -1: "▼", 0: "="}[direction]
            if k.higher_is_better is None or direction == 0:
                tone = "flat"
            else:
                tone = "good" if (direction > 0) == k.higher_is_better else "bad"
            if same:
                words = _("unchanged since the previous run")
            elif k.share or previous == 0:
                words = _("from {previous} in the previous run").format(previous=fmt(previous, k.kind, **options))
            else:
                words = _("{change} vs the previous run").format(
                    change=fmt_percent((k.value - previous) / abs(previous), signed=True))
            change = f"<span class='chg {tone}'>{arrow} {e(words)}</span>"
        else:
            first_run = _("no earlier run to compare")
            change = f"<span class='chg flat'>{e(first_run)}</span>"
        trend = k.history + [k.value]
        label = _("{measure} over the last {n} runs: from {first} to {last}").format(
            measure=k.label, n=len(trend), first=fmt(trend[0], k.kind, **options), last=value)
        cards.append(f"<div class='kpi'><span class='k'>{e(k.label)}</span><b>{e(value)}</b>{change}"
                     f"{_sparkline(trend, label)}<span class='what'>{e(k.counts)}</span></div>")
    return f"<div class='kpis'>{''.join(cards)}</div>" if cards else ""


def _links_html(links: list[tuple[str, str]]) -> str:
    e = html.escape
    return " &middot; ".join(f"<a href='{e(href, quote=True)}'>{e(label)}</a>" for href, label in links)


def _findings_html(findings: list[Any]) -> str:
    """The "What this run says" list: sentence, what to do, and the pages and files behind it."""
    e = html.escape
    do, evidence = _("Do:"), _("Evidence:")
    items = []
    for f in findings:
        action = (f"<span class='act'><b>{e(do)}</b> {e(f.action)}</span>" if f.action else "")
        source = (f"<span class='src'>{e(evidence)} {_links_html(f.links)}</span>" if f.links else "")
        items.append(f"<li>{e(f.text)}{action}{source}</li>")
    return f"<ol class='findings'>{''.join(items)}</ol>" if items else ""


def _reconciliation_html(recon: dict) -> str:
    """"How the totals relate": the order counts and revenue totals the pages use, and the steps between them."""
    if not recon:
        return ""
    e = html.escape
    titles = {"orders": _("Orders"), "revenue": _("Revenue")}
    amount, shown_on = _("count or amount"), _("shown on")
    heading = _("How the totals relate")
    explain = _("Pages count orders and revenue in different ways: with or without refunds, up to the as-of "
                "date, or only orders with a marketing touch. Each step below leads from one total to the next.")
    blocks = []
    for key, rows in recon.items():
        body = "".join(
            f"<tr><td>{e(label)}</td><td class='num'>{e(number)}</td><td>{_links_html(links)}</td></tr>"
            for label, number, links in rows)
        blocks.append(f"<table><tr><th>{e(titles.get(key, key))}</th><th>{e(amount)}</th>"
                      f"<th>{e(shown_on)}</th></tr>{body}</table>")
    return (f"<h2 id='totals'>{e(heading)}</h2><p class='sub'>{e(explain)}</p>"
            f"<div class='recon'>{''.join(blocks)}</div>")


def _inputs_html(manifest: dict) -> str:
    """Input files with their rows read, loaded, quarantined and dropped as duplicates (file names only)."""
    from crmlib.present import fmt_count

    e = html.escape
    quality = manifest.get("data_quality") or {}
    rows = []
    for item in manifest.get("inputs") or []:
        source = str(item.get("source") or "")
        q = quality.get(source) or {}
        cells = "".join(f"<td class='num'>{e(fmt_count(q.get(c)))}</td>"
                        for c in ("rows_read", "rows_loaded", "rows_quarantined", "duplicates_dropped"))
        rows.append(f"<tr><td>{e(source)}</td><td>{e(kind_label(item.get('kind') or ''))}</td>"
                    f"<td>{e(Path(str(item.get('path') or '')).name)}</td>{cells}</tr>")
    if not rows:
        return ""
    head = "".join(f"<th>{e(h)}</th>" for h in (_("source"), _("kind"), _("file"), _("rows read"), _("loaded"),
                                                _("quarantined"), _("duplicates dropped")))
    heading = _("Input files and data quality")
    explain = _("Every row read is loaded, quarantined with a reason (see the ingest page) or dropped as a "
                "counted duplicate.")
    return (f"<h2 id='inputs'>{e(heading)}</h2><p class='sub'>{e(explain)}</p>"
            f"<table><tr>{head}</tr>{''.join(rows)}</table>")


def _status_html(status: str) -> str:
    """A stage or run status in plain words of the report's language, styled by its class."""
    from crmlib.status import status_words

    status = str(status)
    return f"<span class='{html.escape(status)}'>{html.escape(status_words(status))}</span>"


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and one rename, so a reader (a browser,
    the next run, a scheduler) never sees half a page or half a manifest."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_run_table(run_dir: str | Path, name: str, columns: list[str] | None = None) -> pd.DataFrame | None:
    """The run table ``tables/<name>.parquet`` of ``run_dir`` as a DataFrame, or None when no stage wrote it
    (report functions only read; a page shows what the stages wrote)."""
    path = Path(run_dir) / "tables" / f"{name}.parquet"
    return pd.read_parquet(path, columns=columns) if path.exists() else None


def read_run_json(run_dir: str | Path, name: str) -> Any:
    """The small JSON document ``tables/<name>.json`` of ``run_dir``, or None when no stage wrote it."""
    path = Path(run_dir) / "tables" / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _engine_text(manifest: dict, label: str) -> str:
    """`` · engine spark (local[2])`` for a run on another engine than the default DuckDB, else nothing:
    results are the same on both, but timings and the run's table layout (folders of part files) are not."""
    engine = (manifest.get("params") or {}).get("engine") or {}
    kind = str(engine.get("kind") or "duckdb")
    if kind == "duckdb":
        return ""
    master = f" ({engine['master']})" if engine.get("master") else ""
    return f" &middot; {label} {html.escape(kind + master)}"


def _as_of_text(manifest: dict) -> str:
    as_of = manifest.get("as_of")
    if isinstance(as_of, dict) and as_of.get("as_of"):
        if not as_of.get("source"):
            return str(as_of["as_of"])
        source = str(as_of["source"])
        return _("{date} ({source})").format(date=as_of["as_of"],
                                            source=_(_AS_OF_SOURCES[source]) if source in _AS_OF_SOURCES else source)
    return str(manifest.get("params", {}).get("run", {}).get("as_of") or _("latest order date"))


def write_run_index(run_dir: str | Path, manifest: dict, *, history_dir: str | Path | None = None) -> Path:
    """Write ``run_dir/index.html``, the run's decision brief, and ``run_dir/kpis.json``.

    First the findings ("What this run says": sentences with their numbers, what to do and the page
    section behind each), then the business KPIs with their change against the previous successful
    run of the same params name and a trend line, how the order and revenue totals relate, each
    stage's status (with the reason it was skipped or failed) and warnings, and the input files.
    Everything is read from the run's tables (:mod:`crmlib.brief`); a table that is absent or cannot be
    read leaves its part out, so the page is written whatever state a failed stage left.

    Parameters
    ----------
    run_dir : path
        The run folder.
    manifest : dict
        The run's manifest.
    history_dir : path, optional
        The reports folder whose earlier runs give the KPI history (default: the run folder's parent).
    """
    from crmlib.brief import build_brief

    run_dir = Path(run_dir)
    status = manifest.get("status", "running")
    run = manifest.get("params", {}).get("run", {})
    e = html.escape
    brief = build_brief(run_dir, manifest, history_dir=history_dir)
    # every label first, outside the f-strings, so the message extractor finds each _() literal
    t = {k: e(v) for k, v in {
        "based": _("Stages marked not selected did not run: their tables were copied from run"),
        "warnings": _("Warnings"),
        "warnings_sub": _("Steps that could not be computed on this data; the reports show why in their place."),
        "no_findings": _("No findings: no stage wrote the tables they are read from."),
        "kpis": _("Key measures"),
        "kpis_sub": _("Change against the previous successful run of the same params; the line shows up to the "
                      "last 12 runs."),
        "all_runs": _("all runs"), "run": _("run"), "status": _("status"), "as_of": _("as of"),
        "time_zone": _("time zone"), "currency": _("currency"), "started": _("started"), "engine": _("engine"),
        "findings": _("What this run says"), "stages": _("Stages"), "stage": _("stage"), "time": _("time"),
        "note": _("note"),
        "details": _("Details: manifest.json (inputs with sha256, row counts, package versions). Executed "
                     "notebooks (.ipynb) beside this page are the debugging record."),
    }.items()}
    rows, warnings = [], []
    seconds = _("{seconds} s")
    for s in manifest.get("stages", []):
        label = stage_label(s["stage"])
        link = f"<a href='{e(s['html'])}'>{e(label)}</a>" if s.get("html") else e(label)
        dur = seconds.format(seconds=f"{s['duration_s']:.1f}") if s.get("duration_s") is not None else ""
        # reason_text: the reason in the run's language (runs before it have the English reason only)
        note = s.get("reason_text") or s.get("reason") or ""
        if s.get("warnings"):
            note = _("{n} warning(s), listed below").format(n=len(s["warnings"]))
        rows.append(f"<tr><td>{link}</td><td>{_status_html(s['status'])}</td>"
                    f"<td class='num'>{e(dur)}</td><td>{e(note)}</td></tr>")
        # step names are English codes (N_) until shown; messages were written in the run's language
        warnings += [f"<li><b>{e(label)}</b> &middot; {e(_(str(w.get('step') or '')))}: "
                     f"{e(str(w.get('message') or ''))}</li>" for w in s.get("warnings") or []]
    failed_title, operator_text = _("{stage} failed"), _("Warning: {message}.")

    def error_text(stage: dict) -> str:
        # a stage failed by the runner (a needed table missing) has our own reason as its error: shown
        # in the run's language; an exception's text is shown as it was raised
        same = stage.get("reason_text") and stage.get("error") == stage.get("reason")
        return str(stage["reason_text"] if same else stage["error"])

    errors = "".join(
        f"<h3>{e(failed_title.format(stage=stage_label(s['stage'])))}</h3><pre class='error'>{e(error_text(s))}</pre>"
        for s in manifest.get("stages", []) if s.get("status") == "failed" and s.get("error"))
    # operator warnings are fixed messages (N_) stored in English: translated here
    operator = "".join(f"<p class='warning'>{e(operator_text.format(message=_(str(w))))}</p>"
                       for w in manifest.get("operator_warnings") or [])
    based = (f"<p>{t['based']} "
             f"<a href='../{e(manifest['based_on'])}/index.html'><code>{e(manifest['based_on'])}</code></a>.</p>"
             if manifest.get("based_on") else "")
    warning_list = (f"<h2>{t['warnings']}</h2><p class='sub'>{t['warnings_sub']}</p><ul>{''.join(warnings)}</ul>"
                    if warnings else "")
    notes = "".join(f"<li>{e(n)}</li>" for n in brief.notes)
    notes = f"<ul class='notes'>{notes}</ul>" if notes else ""
    findings = _findings_html(brief.findings) or f"<p>{t['no_findings']}</p>"
    name = str(manifest.get("run_name") or run.get("name") or "")
    headline = (_("{name}: what to do this week, as of {as_of}").format(name=name, as_of=brief.as_of)
                if brief.as_of else _("{name}: what to do this week").format(name=name))
    kpi_panel = _kpis(brief.kpis, brief.currency)
    kpi_block = (f"<h2 id='kpis'>{t['kpis']}</h2><p class='sub'>{t['kpis_sub']}</p>{kpi_panel}" if kpi_panel else "")
    body = (
        f"<p><a href='../index.html'>&larr; {t['all_runs']}</a></p>"
        f"<h1>{e(headline)}</h1>"
        f"<p class='sub'>{t['run']} {e(manifest['run_id'])} &middot; {t['status']} {_status_html(status)} "
        f"&middot; {t['as_of']} {e(_as_of_text(manifest))} &middot; "
        f"{t['time_zone']} {e(str(run.get('timezone')))} &middot; {t['currency']} {e(str(run.get('currency')))}"
        f"{_engine_text(manifest, t['engine'])}"
        f" &middot; {t['started']} {e(manifest.get('started', '')[:19].replace('T', ' '))} UTC</p>"
        f"<h2 id='findings'>{t['findings']}</h2>{findings}{notes}"
        f"{kpi_block}{_reconciliation_html(brief.reconciliation)}"
        f"<h2 id='stages'>{t['stages']}</h2>{operator}{based}"
        f"<table><tr><th>{t['stage']}</th><th>{t['status']}</th><th>{t['time']}</th>"
        f"<th>{t['note']}</th></tr>{''.join(rows)}</table>{errors}{warning_list}"
        f"{_inputs_html(manifest)}"
        f"<p class='sub'>{t['details']}"
        f" <a href='manifest.json'>manifest.json</a></p>"
    )
    path = run_dir / "index.html"
    write_text_atomic(path, _page(_("CRM run {run_id}").format(run_id=manifest["run_id"]), body))
    return path


def write_reports_index(output_dir: str | Path) -> Path:
    """Rewrite ``output_dir/index.html`` atomically: every finished run, newest first, failed runs marked,
    and for ``--only`` runs the stages that ran and the run the others' tables came from."""
    output_dir = Path(output_dir)
    e = html.escape
    runs = []
    for manifest_path in output_dir.glob("*/manifest.json"):
        try:
            m = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        runs.append((str(m.get("started", "")), manifest_path.parent.name, m))
    runs.sort(key=lambda r: (r[0], r[1]), reverse=True)
    rows = []
    # the page is written in the language of the run that rewrites it; each run's own page keeps its language
    failed_in, seconds = _("(stage {stage})"), _("{seconds} s")
    only_note = _("ran only {ran}; {not_run} skipped, not selected (tables from run {run})")
    only_note_nothing = _("ran only {ran}; {not_run} skipped, not selected (tables not available)")
    for started, folder, m in runs:
        status = m.get("status", "?")
        detail = f" {e(failed_in.format(stage=stage_label(m['failed_stage'])))}" if m.get("failed_stage") else ""
        stages = m.get("stages") or []
        not_run = [stage_label(s["stage"]) for s in stages if s.get("status") == "skipped"
                   and str(s.get("reason", "")).startswith("not selected")]
        if not_run:
            ran = [stage_label(s["stage"]) for s in stages if s.get("status") != "skipped"]
            names = {"ran": _(", ").join(ran) or _("nothing"), "not_run": _(", ").join(not_run)}
            note = (only_note.format(run=m["based_on"], **names) if m.get("based_on")
                    else only_note_nothing.format(**names))
            detail += f"<br><small>{e(note)}</small>"
        as_of = _as_of_text(m) if (m.get("as_of") or m.get("params", {}).get("run", {}).get("as_of")) else ""
        duration = seconds.format(seconds=m["duration_s"]) if m.get("duration_s") is not None else ""
        rows.append(
            f"<tr class='{'failed-run' if status == 'failed' else ''}'>"
            f"<td><a href='{e(folder)}/index.html'>{e(str(m.get('run_id', folder)))}</a></td>"
            f"<td>{e(str(m.get('run_name', '')))}</td><td>{e(as_of)}</td>"
            f"<td>{e(started[:19].replace('T', ' '))}</td>"
            f"<td class='num'>{e(duration)}</td>"
            f"<td>{_status_html(status)}{detail}</td></tr>")
    title = _("CRM analytics runs")
    sub = _("{n} run(s), newest first. Updated {time} UTC.").format(
        n=len(runs), time=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M"))
    head = "".join(f"<th>{e(h)}</th>" for h in (_("run"), _("params"), _("as of"), _("started (UTC)"),
                                                _("duration"), _("status")))
    body = (f"<h1>{e(title)}</h1><p class='sub'>{e(sub)}</p>"
            f"<table><tr>{head}</tr>{''.join(rows)}</table>")
    path = output_dir / "index.html"
    write_text_atomic(path, _page(title, body))
    return path


# -- helpers for notebook cells ----------------------------------------------------------------------
def run_header(ctx: Any) -> Any:
    """A Markdown block naming the run, its as-of date, time zone, currency and inputs (no data).

    Every value is escaped (:func:`escape_markdown`): source names and file names come from the user.
    """
    from IPython.display import Markdown

    p = ctx.params
    esc = escape_markdown
    label = {k: esc(v) for k, v in {
        "run": _("Run"), "params": _("params"), "as_of": _("as of"), "time_zone": _("time zone"),
        "currency": _("currency"), "source": _("source"), "kind": _("kind"), "file": _("file")}.items()}
    as_of = p["run"]["as_of"] or _("latest order date")
    lines = [
        f"**{label['run']}** {esc(ctx.run_dir.name.removeprefix('.tmp-'))} &middot; **{label['params']}** "
        f"{esc(Path(p['_path']).name)} &middot; **{label['as_of']}** "
        f"{esc(as_of)} &middot; **{label['time_zone']}** "
        f"{esc(p['run']['timezone'])} &middot; **{label['currency']}** {esc(p['run']['currency'])}",
        "",
        f"| {label['source']} | {label['kind']} | {label['file']} |",
        "|---|---|---|",
    ]
    lines += [f"| {esc(s['name'])} | {esc(kind_label(s['kind']))} | {esc(Path(s['path']).name)} |"
              for s in p["sources"]]
    return Markdown("\n".join(lines))


#: Download names are file names chosen by the code (``roi_by_channel``), never by data.
_DOWNLOAD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
#: Characters openpyxl refuses in a cell (XML 1.0 control characters).
_XLSX_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


class ReportTable:
    """A table ready for a report page: HTML-escaped cells, formatted numbers, optional download links.

    Jupyter shows it through :meth:`_repr_html_`; :meth:`to_html` gives the same HTML.
    """

    def __init__(self, html_text: str, *, shown: pd.DataFrame, downloads: dict[str, Path] | None = None):
        self._html = html_text
        #: the formatted cells as shown (text), for tests and for callers that want the values
        self.shown = shown
        #: kind ("csv", "xlsx") -> path of the full table written beside the page
        self.downloads = downloads or {}

    def to_html(self) -> str:
        """The table's HTML."""
        return self._html

    def __repr__(self) -> str:  # the plain-text fallback names the table, never an object address
        return f"table of {len(self.shown):,} rows"

    def _repr_html_(self) -> str:
        return self._html


def _cell_text(value: Any) -> str:
    """Any cell as plain text: no repr, dict, list or NaN (a dict reads ``control 1,990 · treatment 2,243``)."""
    from crmlib.present import fmt_count, fmt_number

    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, dict):
        return " · ".join(f"{_cell_text(k)} {_cell_text(v)}".strip() for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
        return ", ".join(_cell_text(v) for v in value)
    if isinstance(value, (bool, np.bool_)):
        return _("yes") if value else _("no")
    if isinstance(value, (int, np.integer)):
        return fmt_count(value)
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return ""
        return fmt_count(value) if float(value).is_integer() else fmt_number(value)
    if isinstance(value, (pd.Timestamp, dt.datetime)):
        return value.strftime("%Y-%m-%d %H:%M") if (value.hour or value.minute) else value.strftime("%Y-%m-%d")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, pd.Period):
        return str(value)
    return str(value)


def _write_xlsx(df: pd.DataFrame, path: Path) -> Path:
    """``df`` as an Excel workbook, text cells neutralised like :func:`write_people_csv` (openpyxl would
    otherwise store ``=HYPERLINK(...)`` as a live formula)."""
    out = df.copy()
    for col in out.columns:
        values = out[col]
        if pd.api.types.is_datetime64_any_dtype(values) and getattr(values.dt, "tz", None) is not None:
            out[col] = values.dt.tz_localize(None)  # Excel has no time zones
        elif pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values):
            out[col] = values.astype(object).map(
                lambda v: neutralize_formula(_XLSX_ILLEGAL.sub("", v)) if isinstance(v, str)
                else (_cell_text(v) if isinstance(v, (dict, list, tuple, set)) else v))
    out.columns = [neutralize_formula(_XLSX_ILLEGAL.sub("", str(c))) for c in out.columns]
    tmp = path.with_name(f".{path.stem}.tmp.xlsx")
    out.to_excel(tmp, index=False, engine="openpyxl")
    tmp.replace(path)
    return path


def show(df: pd.DataFrame | Any, *, kinds: dict[str, str] | None = None, currency: str | None = None,
         columns: list[str] | None = None, max_rows: int = 15, caption: str | None = None,
         download: str | None = None, run_dir: str | Path | None = None, digits: int | None = None) -> Any:
    """A DataFrame as a report table: numbers through :mod:`crmlib.present`, few columns, top rows.

    Parameters
    ----------
    df : DataFrame or anything
        The table. ``None`` shows "not available"; anything that is not a DataFrame (a stage's
        :class:`~crmlib.status.Unavailable` notice) is returned as it is.
    kinds : dict, optional
        Column -> number kind (``money``, ``count``, ``percent``, ``pvalue``, ``ratio``, ``number``).
        Other numeric columns are shown as counts when whole, else with three significant figures.
    currency : str, optional
        The currency code written before ``money`` columns.
    columns : list of str, optional
        The columns shown on the page, in this order (the few a decision needs); the download holds all.
    max_rows : int
        Rows shown; when the table has more, the caption says "top N of M rows".
    caption : str, optional
        The caption above the table.
    download : str, optional
        A file name without extension: the full table is written as ``run_dir/downloads/<download>.csv``
        (:func:`write_people_csv`) and ``.xlsx``, both with formula cells neutralised, and linked beside
        the table (relative links: the stage page lives in ``run_dir``). Writing it is presentation:
        the stage's own tables are written by the stage call.
    run_dir : path, optional
        The run directory; required with ``download``.
    digits : int, optional
        Ignored; kept so that calls written before the presentation layer still work.

    Returns
    -------
    ReportTable or the input unchanged

    Notes
    -----
    Every cell, column name, caption and link is HTML-escaped: a channel named ``<script>...`` shows
    as that text. No cell shows a repr, a dict, a list or ``NaN``.
    """
    from crmlib.present import format_frame

    del digits  # formats come from the presentation layer now
    if df is None:
        return note_markdown(_("{table}: not available for this run.").format(table=caption or _("This table")))
    if not isinstance(df, pd.DataFrame):
        return df
    if df.empty:
        return note_markdown(_("{table}: no rows.").format(table=caption or _("Nothing to show")))
    if download is not None and (run_dir is None or not _DOWNLOAD_NAME.fullmatch(download)):
        raise ValueError(f"show(download={download!r}) needs run_dir and a plain file name "
                         "(letters, digits, '_', '-', '.')")
    full = df.reset_index(drop=True)
    shown_cols = [c for c in columns if c in full.columns] if columns else list(full.columns)
    view = full.loc[:, shown_cols].head(max_rows)
    kinds = {c: k for c, k in (kinds or {}).items() if c in view.columns}
    formatted = format_frame(view, kinds, currency=currency)
    numeric = [c for c in view.columns
               if (c in kinds and kinds[c] != "label") or (pd.api.types.is_numeric_dtype(view[c]) and not pd.api.types.is_bool_dtype(view[c]))]
    for col in formatted.columns:
        if col not in kinds:
            formatted[col] = [_cell_text(v) for v in formatted[col]]
    formatted.columns = [str(c) for c in formatted.columns]
    e = html.escape
    head = "".join(f"<th style='text-align:{'right' if c in numeric else 'left'}'>{e(str(c))}</th>"
                   for c in view.columns)
    body = "".join(
        "<tr>" + "".join(f"<td style='text-align:{'right;white-space:nowrap' if c in numeric else 'left'}'>{e(str(v))}</td>"
                         for c, v in zip(view.columns, row)) + "</tr>"
        for row in formatted.itertuples(index=False, name=None))
    notes = []
    if len(full) > len(view):
        notes.append(_("top {n} of {m} rows").format(n=f"{len(view):,}", m=f"{len(full):,}"))
    if len(shown_cols) < len(full.columns):
        notes.append(_("{n} of {m} columns").format(n=len(shown_cols), m=len(full.columns)))
    downloads: dict[str, Path] = {}
    links = ""
    if download is not None:
        folder = Path(run_dir) / "downloads"
        folder.mkdir(parents=True, exist_ok=True)
        downloads["csv"] = write_people_csv(full, folder / f"{download}.csv")
        downloads["xlsx"] = _write_xlsx(full, folder / f"{download}.xlsx")
        full_table = _("full table:")
        links = (f" &middot; {e(full_table)} "
                 f"<a href='downloads/{e(download)}.csv' download>CSV</a> &middot; "
                 f"<a href='downloads/{e(download)}.xlsx' download>Excel</a>")
    caption_html = ""
    if caption or notes or links:
        joined = _("; ").join(notes)
        extra = f" <span style='color:#57606a;font-weight:normal'>({e(joined)})</span>" if notes else ""
        caption_html = (f"<caption style='caption-side:top;text-align:left;font-weight:600;padding:.3rem 0'>"
                        f"{e(caption or '')}{extra}<span style='font-weight:normal'>{links}</span></caption>")
    table = (f"<table class='crm-table' style='border-collapse:collapse;font-size:.92rem'>{caption_html}"
             f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    return ReportTable(table, shown=formatted, downloads=downloads)


#: Markdown punctuation that could turn a value into a link, emphasis, a heading or a table cell break.
_MARKDOWN_SPECIALS = frozenset("\\`*_{}[]()#+-.!|~")


@dataclass(frozen=True)
class Finding:
    """One sentence of a page's "Key findings": ``decision`` (a short imperative: ship, keep funding,
    fix the file...) and ``text`` (the sentence, its numbers formatted through :mod:`crmlib.present`)."""

    decision: str
    text: str


def key_findings(findings: list[Finding | str], *, empty: str) -> Any:
    """A page's "Key findings" as an HTML list: each item led by its decision in bold (plain sentences
    have none); every value escaped (names in the sentences are data). ``empty`` is said when there
    are no findings."""
    from IPython.display import HTML

    if not findings:
        return HTML(f"<p><em>{html.escape(empty)}</em></p>")
    items = []
    decision = _("{decision}.")  # "Ship." / "上线。": the sentence mark is the language's
    for f in findings:
        if isinstance(f, Finding):
            lead = f"<b>{html.escape(decision.format(decision=f.decision))}</b> " if f.decision else ""
            items.append(f"<li style='margin:.3rem 0'>{lead}{html.escape(f.text)}</li>")
        else:
            items.append(f"<li style='margin:.3rem 0'>{html.escape(str(f))}</li>")
    return HTML(f"<ul class='crm-findings' style='font-size:1.02rem;line-height:1.45'>{''.join(items)}</ul>")


def note_markdown(text: str) -> Any:
    """``text`` as an italic Markdown line, escaped (:func:`escape_markdown`): what a view shows in place of a
    table or chart it has nothing for."""
    from IPython.display import Markdown

    return Markdown("*" + escape_markdown(text) + "*")


def escape_markdown(value: Any) -> str:
    """``value`` as literal text inside Markdown that nbconvert turns into HTML.

    HTML is escaped (``<script>`` shows as text), Markdown punctuation is backslash-escaped (no link,
    image or emphasis can come from data) and line breaks become spaces (no new block or table row).
    """
    # quote=False: quotes are harmless in text (only attributes need them escaped), and an entity such as
    # &#x27; would be broken by the backslash that '#' gets below
    text = html.escape(str(value), quote=False).replace("\r", " ").replace("\n", " ")
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIALS else ch for ch in text)


# -- files for people (spreadsheets) ---------------------------------------------------------------------
#: First characters that make a spreadsheet read a cell as a formula (OWASP CSV injection).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def neutralize_formula(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula, made inert by a leading single quote.

    OWASP's rule: text starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return gets a ``'``
    prefix (``=HYPERLINK(...)`` -> ``'=HYPERLINK(...)``). Anything that is not text (numbers, dates,
    missing values) is returned unchanged: a number is a number in the spreadsheet, never a formula.
    """
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def write_people_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` as a CSV meant to be opened by people (Excel, marketing tools), safe against CSV injection.

    Convention: every text cell and every column name goes through :func:`neutralize_formula`; columns
    of a numeric, boolean or date type are written as their values (``-12.5`` stays the number -12.5),
    while text that merely looks like a number (``"-12.5"`` in a text column) is prefixed like any text.
    UTF-8 with a byte-order mark, so that Excel shows Chinese names correctly; written to a temporary
    file and moved into place, so a reader never sees half a file.
    """
    path = Path(path)
    out = df.copy()
    for col in out.columns:
        values = out[col]
        if pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values):
            out[col] = values.astype(object).map(neutralize_formula)
    out.columns = [neutralize_formula(str(c)) for c in out.columns]
    tmp = path.with_name(f".{path.name}.tmp")
    out.to_csv(tmp, index=False, encoding="utf-8-sig", lineterminator="\n")
    tmp.replace(path)
    return path
