"""report.figure: a chart as an HTML <figure> with an embedded image, alt text and an escaped caption."""

from __future__ import annotations

import base64
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from crmlib import report  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _bar_axes():
    fig, ax = plt.subplots(figsize=(4, 2))
    ax.bar(["email", "display"], [6.0, 0.6])
    return fig, ax


def _embedded_png(markup: str) -> bytes:
    match = re.search(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", markup)
    assert match, markup[:300]
    return base64.b64decode(match.group(1))


def test_figure_html_embeds_a_png_with_title_caption_and_alt():
    fig, ax = _bar_axes()
    markup = report.figure_html(ax, title="Email returns the most", caption="ROAS per channel.",
                                alt="Bar chart: email 6.0, display 0.6")
    assert markup.startswith("<figure") and markup.endswith("</figure>")
    assert _embedded_png(markup).startswith(PNG_MAGIC)
    assert "alt='Bar chart: email 6.0, display 0.6'" in markup
    caption = re.search(r"<figcaption[^>]*>(.*)</figcaption>", markup).group(1)
    assert "Email returns the most" in caption and "ROAS per channel." in caption
    assert "http" not in markup  # nothing fetched from the network


def test_figure_text_from_data_is_escaped():
    _, ax = _bar_axes()
    evil = "<script>alert(1)</script>' onerror='x"
    markup = report.figure_html(ax, title=evil, caption=evil, alt=evil)
    assert "<script>" not in markup
    assert "' onerror='" not in markup  # the alt attribute cannot be closed by the data
    assert markup.count("&lt;script&gt;") == 3


def test_figure_closes_the_matplotlib_figure_so_it_is_not_shown_twice():
    fig, ax = _bar_axes()
    assert plt.fignum_exists(fig.number)
    report.figure_html(ax, title="t", caption="c", alt="a")
    assert not plt.fignum_exists(fig.number)


@pytest.mark.parametrize("kind", ["figure", "axes", "axes_array"])
def test_figure_accepts_figure_axes_and_arrays_of_axes(kind):
    fig, axes = plt.subplots(1, 2, figsize=(4, 2))
    for ax in axes:
        ax.plot([0, 1], [1, 0])
    target = {"figure": fig, "axes": axes[1], "axes_array": axes}[kind]
    markup = report.figure_html(target, title="t", caption="c", alt="a")
    assert _embedded_png(markup).startswith(PNG_MAGIC)
    assert not plt.fignum_exists(fig.number)


def test_figure_rejects_what_is_not_a_chart():
    with pytest.raises(TypeError, match="Figure or Axes"):
        report.figure_html("not a chart", title="t", caption="c", alt="a")


def test_figure_displays_the_html(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    _, ax = _bar_axes()
    assert report.figure(ax, title="Takeaway", caption="Caption", alt="Alt") is None
    assert len(shown) == 1
    assert shown[0].data.startswith("<figure") and "Takeaway" in shown[0].data
