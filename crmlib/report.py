"""Publishing: notebook -> stakeholder HTML, the run's ``index.html`` and ``reports/index.html``.

Stakeholder HTML hides code, prompts, the ``parameters``/``injected-parameters`` cells and stderr
(warnings, kernel noise); tracebacks are cut to their one-line error so a failed stage shows what
went wrong without dumping internals. Reports carry counts and aggregates, never people.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["render_notebook", "write_run_index", "write_reports_index", "run_header", "show",
           "escape_markdown", "neutralize_formula", "write_people_csv"]

_HIDDEN_TAGS = ("parameters", "injected-parameters", "remove-cell")

_CSS = """
body{font-family:-apple-system,'Segoe UI','Noto Sans CJK SC','WenQuanYi Micro Hei',Helvetica,Arial,sans-serif;
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
"""


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
            f"<body>{body}</body></html>\n")


# -- notebooks -> HTML ---------------------------------------------------------------------------------
def _clean_for_stakeholders(nb: Any) -> Any:
    """Drop stderr streams and shorten tracebacks, in place."""
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        kept = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                continue
            if output.get("output_type") == "error":
                output["traceback"] = [f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"]
            kept.append(output)
        cell["outputs"] = kept
    return nb


def render_notebook(executed: str | Path, html_path: str | Path, *, title: str) -> Path:
    """Render an executed notebook to stakeholder HTML (no code, prompts, parameters or stderr).

    Parameters
    ----------
    executed : path
        The executed ``.ipynb``.
    html_path : path
        Where to write the HTML.
    title : str
        The page title.
    """
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    nb = nbformat.read(str(executed), as_version=4)
    nb = _clean_for_stakeholders(nb)
    tags = TagRemovePreprocessor(remove_cell_tags=_HIDDEN_TAGS, enabled=True)
    exporter = HTMLExporter(template_name="lab", exclude_input=True, exclude_output_prompt=True,
                            exclude_input_prompt=True)
    exporter.register_preprocessor(tags, enabled=True)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    Path(html_path).write_text(body, encoding="utf-8")
    return Path(html_path)


# -- the run's landing page --------------------------------------------------------------------------
def _kpis(run_dir: Path) -> list[tuple[str, str]]:
    """Headline figures from the run's tables; a table that cannot be read leaves its figures out (the
    run page must be written whatever state a failed stage left the tables in)."""
    tables = run_dir / "tables"
    kpis: list[tuple[str, str]] = []

    def add(make: Any) -> None:
        try:
            kpis.extend(make())
        except (OSError, ValueError, KeyError, TypeError):  # pyarrow's errors derive from these
            pass

    def customers() -> list[tuple[str, str]]:
        df = pd.read_parquet(tables / "customers.parquet", columns=["orders", "revenue"])
        return [("customers", f"{len(df):,}"), ("orders", f"{int(df['orders'].sum()):,}"),
                ("net revenue", f"{df['revenue'].sum():,.0f}")]

    def quality() -> list[tuple[str, str]]:
        q = json.loads((tables / "data_quality.json").read_text(encoding="utf-8")).get("sources", {})
        read = sum(s.get("rows_read", 0) for s in q.values())
        quarantined = sum(s.get("rows_quarantined", 0) for s in q.values())
        return [("rows read", f"{read:,}"), ("rows quarantined", f"{quarantined:,}")]

    def model() -> list[tuple[str, str]]:
        m = json.loads((tables / "clv_model.json").read_text(encoding="utf-8"))
        n = (m.get("bgnbd") or {}).get("n_customers")
        return [("BG/NBD fitted on", f"{n:,} customers")] if isinstance(n, int) else []

    def experiments() -> list[tuple[str, str]]:
        df = pd.read_parquet(tables / "ab_results.parquet", columns=["experiment_id"])
        return [("experiments analysed", f"{df['experiment_id'].nunique():,}")]

    for name, make in (("customers.parquet", customers), ("data_quality.json", quality),
                       ("clv_model.json", model), ("ab_results.parquet", experiments)):
        if (tables / name).exists():
            add(make)
    return kpis


def _status_html(status: str) -> str:
    """A stage or run status in plain words, styled by its class."""
    status = str(status)
    return f"<span class='{html.escape(status)}'>{html.escape(status.replace('_', ' '))}</span>"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _as_of_text(manifest: dict) -> str:
    as_of = manifest.get("as_of")
    if isinstance(as_of, dict) and as_of.get("as_of"):
        source = f" ({as_of['source']})" if as_of.get("source") else ""
        return f"{as_of['as_of']}{source}"
    return str(manifest.get("params", {}).get("run", {}).get("as_of") or "latest order date")


def write_run_index(run_dir: str | Path, manifest: dict) -> Path:
    """Write ``run_dir/index.html``: headline KPIs, each stage's status (with the reason it was skipped
    or failed), the warnings of stages that finished with warnings, and links to the reports."""
    run_dir = Path(run_dir)
    status = manifest.get("status", "running")
    run = manifest.get("params", {}).get("run", {})
    e = html.escape
    kpis = "".join(f"<div class='kpi'><b>{e(v)}</b><span>{e(k)}</span></div>" for k, v in _kpis(run_dir))
    rows, warnings = [], []
    for s in manifest.get("stages", []):
        link = f"<a href='{e(s['html'])}'>{e(s['stage'])}</a>" if s.get("html") else e(s["stage"])
        dur = f"{s['duration_s']:.1f} s" if s.get("duration_s") is not None else ""
        note = s.get("reason") or ""
        if s.get("warnings"):
            note = f"{len(s['warnings'])} warning(s), listed below"
        rows.append(f"<tr><td>{link}</td><td>{_status_html(s['status'])}</td>"
                    f"<td class='num'>{dur}</td><td>{e(note)}</td></tr>")
        warnings += [f"<li><b>{e(s['stage'])}</b> &middot; {e(str(w.get('step') or ''))}: "
                     f"{e(str(w.get('message') or ''))}</li>" for w in s.get("warnings") or []]
    errors = "".join(
        f"<h3>{e(s['stage'])} failed</h3><pre class='error'>{e(s['error'])}</pre>"
        for s in manifest.get("stages", []) if s.get("status") == "failed" and s.get("error"))
    operator = "".join(f"<p class='warning'>Warning: {e(w)}.</p>" for w in manifest.get("operator_warnings") or [])
    based = (f"<p>Stages marked <i>not selected</i> did not run: their tables were copied from run "
             f"<a href='../{e(manifest['based_on'])}/index.html'><code>{e(manifest['based_on'])}</code></a>.</p>"
             if manifest.get("based_on") else "")
    warning_list = (f"<h2>Warnings</h2><p class='sub'>Steps that could not be computed on this data; "
                    f"the reports show why in their place.</p><ul>{''.join(warnings)}</ul>" if warnings else "")
    body = (
        f"<p><a href='../index.html'>&larr; all runs</a></p>"
        f"<h1>Run {e(manifest['run_id'])}</h1>"
        f"<p class='sub'>status {_status_html(status)} &middot; as of {e(_as_of_text(manifest))} &middot; "
        f"time zone {e(str(run.get('timezone')))} &middot; currency {e(str(run.get('currency')))}"
        f" &middot; started {e(manifest.get('started', '')[:19].replace('T', ' '))} UTC</p>"
        f"{operator}<div class='kpis'>{kpis}</div>{based}"
        f"<h2>Stages</h2><table><tr><th>stage</th><th>status</th><th>time</th><th>note</th></tr>"
        f"{''.join(rows)}</table>{errors}{warning_list}"
        f"<p class='sub'>Details: <a href='manifest.json'>manifest.json</a> (inputs with sha256, "
        f"row counts, package versions). Executed notebooks (.ipynb) beside this page are the debugging record.</p>"
    )
    path = run_dir / "index.html"
    _write_atomic(path, _page(f"CRM run {manifest['run_id']}", body))
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
    for started, folder, m in runs:
        status = m.get("status", "?")
        detail = f" (stage {e(str(m['failed_stage']))})" if m.get("failed_stage") else ""
        stages = m.get("stages") or []
        not_run = [s["stage"] for s in stages if s.get("status") == "skipped"
                   and str(s.get("reason", "")).startswith("not selected")]
        if not_run:
            ran = [s["stage"] for s in stages if s.get("status") != "skipped"]
            source = f"from run {e(m['based_on'])}" if m.get("based_on") else "not available"
            detail += (f"<br><small>ran only {e(', '.join(ran) or 'nothing')}; {e(', '.join(not_run))} "
                       f"skipped, not selected (tables {source})</small>")
        as_of = _as_of_text(m) if (m.get("as_of") or m.get("params", {}).get("run", {}).get("as_of")) else ""
        rows.append(
            f"<tr class='{'failed-run' if status == 'failed' else ''}'>"
            f"<td><a href='{e(folder)}/index.html'>{e(str(m.get('run_id', folder)))}</a></td>"
            f"<td>{e(str(m.get('run_name', '')))}</td><td>{e(as_of)}</td>"
            f"<td>{e(started[:19].replace('T', ' '))}</td>"
            f"<td class='num'>{e(str(m.get('duration_s', '')))} s</td>"
            f"<td>{_status_html(status)}{detail}</td></tr>")
    body = ("<h1>CRM analytics runs</h1>"
            f"<p class='sub'>{len(runs)} run(s), newest first. Updated "
            f"{dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M')} UTC.</p>"
            "<table><tr><th>run</th><th>params</th><th>as of</th><th>started (UTC)</th><th>duration</th>"
            f"<th>status</th></tr>{''.join(rows)}</table>")
    path = output_dir / "index.html"
    _write_atomic(path, _page("CRM analytics runs", body))
    return path


# -- helpers for notebook cells ----------------------------------------------------------------------
def run_header(ctx: Any) -> Any:
    """A Markdown block naming the run, its as-of date, time zone, currency and inputs (no data).

    Every value is escaped (:func:`escape_markdown`): source names and file names come from the user.
    """
    from IPython.display import Markdown

    p = ctx.params
    esc = escape_markdown
    lines = [
        f"**Run** {esc(ctx.run_dir.name.removeprefix('.tmp-'))} &middot; **params** {esc(Path(p['_path']).name)} "
        f"&middot; **as of** {esc(p['run']['as_of'] or 'latest order date')} &middot; **time zone** "
        f"{esc(p['run']['timezone'])} &middot; **currency** {esc(p['run']['currency'])}",
        "",
        "| source | kind | file |",
        "|---|---|---|",
    ]
    lines += [f"| {esc(s['name'])} | {esc(s['kind'])} | {esc(Path(s['path']).name)} |" for s in p["sources"]]
    return Markdown("\n".join(lines))


def show(df: pd.DataFrame | Any, *, digits: int = 3, caption: str | None = None, max_rows: int = 50) -> Any:
    """A DataFrame styled for a report: floats rounded, index hidden, at most ``max_rows`` rows.

    Cell values, column names and the caption are HTML-escaped: a channel, campaign or variant named
    ``<script>...`` shows as that text (pandas' Styler does not escape unless asked). Anything that
    is not a DataFrame (a stage's "skipped: no touchpoints" notice) is returned as it is.
    """
    if df is None:
        from IPython.display import Markdown

        return Markdown(f"*{escape_markdown(caption or 'This table')}: not available for this run.*")
    if not isinstance(df, pd.DataFrame):
        return df
    if df.empty:
        from IPython.display import Markdown

        return Markdown(f"*{escape_markdown(caption or 'Nothing to show')}: no rows.*")
    view = df.head(max_rows).copy()
    for col in view.columns:  # counts that went through a float (fillna, sums) print as integers
        values = view[col]
        if pd.api.types.is_float_dtype(values) and values.notna().any() and (values.dropna() % 1 == 0).all():
            view[col] = values.astype("Int64")
    view.columns = [str(c) for c in view.columns]  # escaped as text below, whatever their type
    styler = (view.style.hide(axis="index")
              .format(precision=digits, thousands=",", na_rep="", escape="html")
              .format_index(escape="html", axis=1))
    if caption:
        styler = styler.set_caption(html.escape(caption))
    return styler


#: Markdown punctuation that could turn a value into a link, emphasis, a heading or a table cell break.
_MARKDOWN_SPECIALS = frozenset("\\`*_{}[]()#+-.!|~")


def escape_markdown(value: Any) -> str:
    """``value`` as literal text inside Markdown that nbconvert turns into HTML.

    HTML is escaped (``<script>`` shows as text), Markdown punctuation is backslash-escaped (no link,
    image or emphasis can come from data) and line breaks become spaces (no new block or table row).
    """
    text = html.escape(str(value), quote=True).replace("\r", " ").replace("\n", " ")
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
