"""render_notebook: stakeholder HTML that loads nothing from the network and links the run's pages."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from crmlib import report


@pytest.fixture
def executed(tmp_path: Path) -> Path:
    """An executed notebook: a hidden parameters cell, a table, a figure, a stderr warning, an error."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("params_path = 'secret.yaml'")
    params.metadata["tags"] = ["parameters"]
    table = nbformat.v4.new_code_cell("df", outputs=[nbformat.v4.new_output(
        "execute_result", data={"text/html": "<table><tr><th>channel</th></tr><tr><td>email</td></tr></table>",
                                "text/plain": "df"}, execution_count=1)])
    chart = nbformat.v4.new_code_cell("report.figure(ax, ...)", outputs=[nbformat.v4.new_output(
        "display_data", data={"text/html": "<figure><img src='data:image/png;base64,iVBORw0KGgo=' alt='bars'>"
                                           "<figcaption>Email leads</figcaption></figure>"})])
    noise = nbformat.v4.new_code_cell("fit()", outputs=[nbformat.v4.new_output(
        "stream", name="stderr", text="RuntimeWarning: overflow in exp\n")])
    nb.cells = [nbformat.v4.new_markdown_cell("# ROI and attribution\n\nSee $x^2$ and a mermaid block."),
                params, table, chart, noise]
    path = tmp_path / "03_roi.ipynb"
    nbformat.write(nb, path)
    return path


PAGES = [("01_ingest.html", "Ingest"), ("03_roi.html", "ROI and attribution"), ("04_ab_tests.html", "A/B tests")]


def test_page_loads_nothing_from_the_network(executed, tmp_path):
    page = report.render_notebook(executed, tmp_path / "03_roi.html", title="ROI", nav=PAGES).read_text()
    assert "<script" not in page  # no require.js, MathJax, mermaid or widget loader
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<link" not in page  # style sheets are inline
    assert "cdnjs" not in page and "unpkg" not in page and "jsdelivr" not in page


def test_page_keeps_outputs_and_hides_internals(executed, tmp_path):
    page = report.render_notebook(executed, tmp_path / "03_roi.html", title="ROI", nav=PAGES).read_text()
    assert "<td>email</td>" in page and "Email leads" in page and "alt=\"bars\"" in page.replace("'", '"')
    assert "secret.yaml" not in page and "RuntimeWarning" not in page
    assert "jp-OutputArea" in page  # the lab look of tables and outputs is kept


def test_navigation_bar_links_the_run_page_and_the_other_stage_pages(executed, tmp_path):
    page = report.render_notebook(executed, tmp_path / "03_roi.html", title="ROI", nav=PAGES).read_text()
    nav = re.search(r"<nav[^>]*crm-nav[^>]*>(.*?)</nav>", page, re.S)
    assert nav, "no navigation bar"
    hrefs = re.findall(r'href="([^"]+)"', nav.group(1))
    assert hrefs == ["index.html", "01_ingest.html", "04_ab_tests.html"]
    assert re.search(r'<span[^>]*aria-current="page"[^>]*>ROI and attribution</span>', nav.group(1))
    assert page.index("crm-nav") < page.index("<td>email</td>")  # the bar comes first


def test_navigation_labels_from_data_are_escaped(executed, tmp_path):
    page = report.render_notebook(executed, tmp_path / "x.html", title="<b>t</b>",
                                  nav=[("02_seg.html", "<script>alert(1)</script>")]).read_text()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page


def test_without_nav_the_bar_links_the_run_page_only(executed, tmp_path):
    page = report.render_notebook(executed, tmp_path / "03_roi.html", title="ROI").read_text()
    nav = re.search(r"<nav[^>]*crm-nav[^>]*>(.*?)</nav>", page, re.S).group(1)
    assert re.findall(r'href="([^"]+)"', nav) == ["index.html"]


def test_page_language_follows_the_run_language(executed, tmp_path):
    page = report.render_notebook(executed, tmp_path / "03_roi.html", title="ROI", language="zh-CN").read_text()
    assert '<html lang="zh-CN">' in page


def _embedded_fonts(page: str) -> list[bytes]:
    import base64

    return [base64.b64decode(m) for m in re.findall(r"url\(data:font/woff;base64,([A-Za-z0-9+/=]+)\)", page)]


def test_chinese_on_the_page_comes_with_its_glyphs_embedded(executed, tmp_path):
    import io

    from fontTools.ttLib import TTFont

    nb = nbformat.read(executed, as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell("渠道：小程序、手机App"))
    nbformat.write(nb, executed)
    page = report.render_notebook(executed, tmp_path / "03_roi.html", title="ROI",
                                  nav=[("04_ab_tests.html", "实验")]).read_text()
    fonts = _embedded_fonts(page)
    assert len(fonts) == 1, "one embedded subset of the CJK font"
    cmap = TTFont(io.BytesIO(fonts[0])).getBestCmap()
    assert {ord(c) for c in "渠道小程序手机实验："} <= set(cmap)
    assert len(cmap) < 100  # only the page's characters, not the 20 MB font
    assert len(re.findall(r"""font-family:[^;}]*["']CRM CJK["']""", page)) >= 2  # the font stacks use it


def test_a_page_without_chinese_embeds_no_font(executed, tmp_path):
    page = report.render_notebook(executed, tmp_path / "03_roi.html", title="ROI", nav=PAGES).read_text()
    assert _embedded_fonts(page) == []


def test_unused_style_rules_and_variables_are_dropped():
    page = ("<html><head><style>:root{--used:red;--chained:var(--used);--icon-unused:url(x.svg)}"
            ".jp-Used{color:var(--chained)} .jp-Unused{color:blue} .jp-Used:not(.jp-Absent){margin:0}"
            "table td{padding:1px} @media print{.jp-Unused{display:none} .jp-Used{display:block}}"
            "</style></head><body><div class='jp-Used' style='border-color:var(--inline)'>x</div>"
            "<table><tr><td>1</td></tr></table></body></html>")
    out = report._drop_unused_css(page.replace("--icon-unused", "--inline:0;--icon-unused"))
    assert ".jp-Unused" not in out and "--icon-unused" not in out
    for kept in (".jp-Used{color:var(--chained)}", "--used:red", "--chained:var(--used)", "--inline:0",
                 ".jp-Used:not(.jp-Absent)", "table td", "@media print", "display:block"):
        assert kept in out.replace(" {", "{"), kept
    assert out.endswith("<table><tr><td>1</td></tr></table></body></html>")


def test_bare_object_reprs_are_not_shown(executed, tmp_path):
    nb = nbformat.read(executed, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("summary", outputs=[nbformat.v4.new_output(
        "execute_result", data={"text/plain": "IngestSummary(sources=10, salt=default)"}, execution_count=5)]))
    nb.cells.append(nbformat.v4.new_code_cell("model", outputs=[nbformat.v4.new_output(
        "display_data", data={"text/plain": "<BetaGeoFitter: fitted with 368 subjects>"})]))
    nbformat.write(nb, executed)
    page = report.render_notebook(executed, tmp_path / "03_roi.html", title="ROI", nav=PAGES).read_text()
    assert "IngestSummary" not in page and "BetaGeoFitter" not in page
    assert "<td>email</td>" in page  # a table's HTML output stays


def test_runner_links_every_stage_page_of_the_run_and_only_those(tiny_params: Path, tmp_path: Path,
                                                                   notebook_writer):
    from crmlib.runner import run_pipeline

    nbs = tmp_path / "nbs"
    notebook_writer(nbs / "01_ingest.ipynb",
                    "from pathlib import Path\nimport pandas as pd\n"
                    "pd.DataFrame({'amount': [12.5]}).to_parquet(Path(run_dir) / 'tables' / 'orders.parquet')")
    notebook_writer(nbs / "02_segmentation.ipynb", "raise ValueError('segmentation broke')")
    res = run_pipeline(tiny_params, notebooks_dir=nbs, run_id="nav")
    pages = {p.name for p in res.run_dir.glob("0*.html")}
    assert pages == {"01_ingest.html", "02_segmentation.html"}  # a failed stage has a page; skipped ones none

    def nav(name: str) -> list[str]:
        bar = re.search(r"<nav[^>]*crm-nav[^>]*>(.*?)</nav>", (res.run_dir / name).read_text(), re.S).group(1)
        return re.findall(r'href="([^"]+)"', bar)

    assert nav("01_ingest.html") == ["index.html", "02_segmentation.html"]
    assert nav("02_segmentation.html") == ["index.html", "01_ingest.html"]
