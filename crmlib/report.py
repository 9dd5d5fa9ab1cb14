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

__all__ = ["render_notebook", "write_run_index", "write_reports_index", "run_header", "show"]

_HIDDEN_TAGS = ("parameters", "injected-parameters", "remove-cell")

_CSS = """
body{font-family:-apple-system,'Segoe UI','Noto Sans CJK SC','WenQuanYi Micro Hei',Helvetica,Arial,sans-serif;
margin:2rem auto;max-width:1100px;color:#1f2328;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}.sub{color:#57606a;margin-top:0}
table{border-collapse:collapse;margin:1rem 0;font-size:.92rem}
th,td{border-bottom:1px solid #d0d7de;padding:.35rem .7rem;text-align:left}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1a7f37;font-weight:600}.failed{color:#cf222e;font-weight:600}.skipped{color:#9a6700}
.running{color:#57606a}.kpis{display:flex;gap:1rem;flex-wrap:wrap;margin:1rem 0}
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
    tables = run_dir / "tables"
    kpis: list[tuple[str, str]] = []
    customers = tables / "customers.parquet"
    if customers.exists():
        df = pd.read_parquet(customers, columns=["orders", "revenue"])
        kpis += [("customers", f"{len(df):,}"), ("orders", f"{int(df['orders'].sum()):,}"),
                 ("net revenue", f"{df['revenue'].sum():,.0f}")]
    quality = tables / "data_quality.json"
    if quality.exists():
        q = json.loads(quality.read_text(encoding="utf-8")).get("sources", {})
        read = sum(s.get("rows_read", 0) for s in q.values())
        quarantined = sum(s.get("rows_quarantined", 0) for s in q.values())
        kpis += [("rows read", f"{read:,}"), ("rows quarantined", f"{quarantined:,}")]
    model = tables / "clv_model.json"
    if model.exists():
        m = json.loads(model.read_text(encoding="utf-8"))
        kpis.append(("BG/NBD fitted on", f"{m.get('bgnbd', {}).get('n_customers', 0):,} customers"))
    ab = tables / "ab_results.parquet"
    if ab.exists():
        df = pd.read_parquet(ab, columns=["experiment_id"])
        kpis.append(("experiments analysed", f"{df['experiment_id'].nunique():,}"))
    return kpis


def write_run_index(run_dir: str | Path, manifest: dict) -> Path:
    """Write ``run_dir/index.html``: headline KPIs, the status of each stage and links to the reports."""
    run_dir = Path(run_dir)
    status = manifest.get("status", "running")
    run = manifest.get("params", {}).get("run", {})
    kpis = "".join(f"<div class='kpi'><b>{html.escape(v)}</b><span>{html.escape(k)}</span></div>"
                   for k, v in _kpis(run_dir))
    rows = []
    for s in manifest.get("stages", []):
        link = f"<a href='{html.escape(s['html'])}'>{html.escape(s['stage'])}</a>" if s.get("html") else html.escape(s["stage"])
        dur = f"{s['duration_s']:.1f} s" if s.get("duration_s") is not None else ""
        rows.append(f"<tr><td>{link}</td><td class='{s['status']}'>{s['status']}</td>"
                    f"<td class='num'>{dur}</td><td>{html.escape(s.get('reason') or '')}</td></tr>")
    based = (f"<p>Upstream tables copied from run <code>{html.escape(manifest['based_on'])}</code>.</p>"
             if manifest.get("based_on") else "")
    body = (
        f"<p><a href='../index.html'>&larr; all runs</a></p>"
        f"<h1>Run {html.escape(manifest['run_id'])}</h1>"
        f"<p class='sub'>status <span class='{status}'>{status}</span> &middot; as of "
        f"{html.escape(str(run.get('as_of') or 'latest order date'))} &middot; time zone "
        f"{html.escape(str(run.get('timezone')))} &middot; currency {html.escape(str(run.get('currency')))}"
        f" &middot; started {html.escape(manifest.get('started', '')[:19].replace('T', ' '))} UTC</p>"
        f"<div class='kpis'>{kpis}</div>{based}"
        f"<h2>Stages</h2><table><tr><th>stage</th><th>status</th><th>time</th><th>note</th></tr>"
        f"{''.join(rows)}</table>"
        f"<p class='sub'>Details: <a href='manifest.json'>manifest.json</a> (inputs with sha256, "
        f"row counts, package versions). Executed notebooks (.ipynb) beside this page are the debugging record.</p>"
    )
    path = run_dir / "index.html"
    path.write_text(_page(f"CRM run {manifest['run_id']}", body), encoding="utf-8")
    return path


def write_reports_index(output_dir: str | Path) -> Path:
    """Rewrite ``output_dir/index.html``: every finished run, newest first, failed runs marked."""
    output_dir = Path(output_dir)
    runs = []
    for manifest_path in output_dir.glob("*/manifest.json"):
        try:
            m = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        runs.append((m.get("started", ""), manifest_path.parent.name, m))
    runs.sort(key=lambda r: (r[0], r[1]), reverse=True)
    rows = []
    for started, folder, m in runs:
        status = m.get("status", "?")
        failed = f" (stage {html.escape(m['failed_stage'])})" if m.get("failed_stage") else ""
        as_of = m.get("params", {}).get("run", {}).get("as_of") or ""
        rows.append(
            f"<tr class='{'failed-run' if status == 'failed' else ''}'>"
            f"<td><a href='{html.escape(folder)}/index.html'>{html.escape(m.get('run_id', folder))}</a></td>"
            f"<td>{html.escape(m.get('run_name', ''))}</td><td>{html.escape(str(as_of))}</td>"
            f"<td>{html.escape(started[:19].replace('T', ' '))}</td>"
            f"<td class='num'>{m.get('duration_s', '')} s</td>"
            f"<td class='{status}'>{status}{failed}</td></tr>")
    body = ("<h1>CRM analytics runs</h1>"
            f"<p class='sub'>{len(runs)} run(s), newest first. Updated "
            f"{dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M')} UTC.</p>"
            "<table><tr><th>run</th><th>params</th><th>as of</th><th>started (UTC)</th><th>duration</th>"
            f"<th>status</th></tr>{''.join(rows)}</table>")
    path = output_dir / "index.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(_page("CRM analytics runs", body), encoding="utf-8")
    tmp.replace(path)
    return path


# -- helpers for notebook cells ----------------------------------------------------------------------
def run_header(ctx: Any) -> Any:
    """A Markdown block naming the run, its as-of date, time zone, currency and inputs (no data)."""
    from IPython.display import Markdown

    p = ctx.params
    lines = [
        f"**Run** `{ctx.run_dir.name.removeprefix('.tmp-')}` &middot; **params** `{Path(p['_path']).name}` &middot; "
        f"**as of** {p['run']['as_of'] or 'latest order date'} &middot; **time zone** {p['run']['timezone']} "
        f"&middot; **currency** {p['run']['currency']}",
        "",
        "| source | kind | file |",
        "|---|---|---|",
    ]
    lines += [f"| {s['name']} | {s['kind']} | `{Path(s['path']).name}` |" for s in p["sources"]]
    return Markdown("\n".join(lines))


def show(df: pd.DataFrame | Any, *, digits: int = 3, caption: str | None = None, max_rows: int = 50) -> Any:
    """A DataFrame styled for a report: floats rounded, index hidden, at most ``max_rows`` rows.

    Anything that is not a DataFrame (a stage's "skipped: no touchpoints" notice) is returned as it is.
    """
    if df is None:
        from IPython.display import Markdown

        return Markdown(f"*{caption or 'This table'}: not available for this run.*")
    if not isinstance(df, pd.DataFrame):
        return df
    if df.empty:
        from IPython.display import Markdown

        return Markdown(f"*{caption or 'Nothing to show'}: no rows.*")
    view = df.head(max_rows).copy()
    for col in view.columns:  # counts that went through a float (fillna, sums) print as integers
        values = view[col]
        if pd.api.types.is_float_dtype(values) and values.notna().any() and (values.dropna() % 1 == 0).all():
            view[col] = values.astype("Int64")
    styler = view.style.hide(axis="index").format(precision=digits, thousands=",", na_rep="")
    if caption:
        styler = styler.set_caption(caption)
    return styler
