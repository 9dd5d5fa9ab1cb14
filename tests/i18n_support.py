"""Find English text left on report pages rendered in another language (tests and `python -m`).

A page of a ``zh-CN`` run should carry no English words except data (channel, campaign, experiment,
variant, source and file names, which are the user's own), units and the acronyms of the trade.
:func:`english_left` lists the visible text pieces that still hold other English words.

    python -m tests.i18n_support <run_dir>     # prints each page's English pieces
"""

from __future__ import annotations

import html.parser
import json
import re
import sys
from pathlib import Path

# acronyms and units a Chinese report keeps as they are
KEEP = {
    "ROI", "ROAS", "mROAS", "CLV", "LTV", "CAC", "NPS", "CSAT", "RFM", "AOV", "BG", "NBD", "CNY", "RMB",
    "USD", "EUR", "HKD", "GMV", "SRM", "CUPED", "MMM", "CSV", "Excel", "HTML", "ID", "IDs", "KPI", "KPIs",
    "Holm", "Welch", "Markov", "Shapley", "Gamma", "Bayes", "Bayesian", "K-means", "means", "Splink",
    "Fellegi", "Sunter", "DuckDB", "Ibis", "Spark", "UTF", "GBK", "BOM", "YAML", "MAP", "NDCG", "ALS",
    "App", "SMS", "EDM", "SEM", "SEO", "UTM", "utm", "Noto", "Sans", "CJK", "jsonl", "parquet", "xlsx",
    "csv", "tsv", "yaml", "ipynb", "html", "json", "png", "svg", "crm", "crmlib", "run", "params",
    "as_of", "customer_key", "iOS", "Android", "PC", "Adstock", "Hill", "Weibull", "Beta", "Dirichlet",
    "Wilson", "Newcombe", "log", "exp", "sqrt", "Wald", "Satterthwaite", "Delta", "Gamma-Gamma", "BG/NBD", "CI", "p", "vs", "max", "min", "k",
}
WORD = re.compile(r"[A-Za-z][A-Za-z_'\-]{2,}")
_SKIP_TAGS = {"script", "style", "head", "title"}


class _Text(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in _SKIP_TAGS:
            self._skip += 1
        for name, value in attrs:
            if name in ("alt", "aria-label") and value:
                self.pieces.append(value)

    def handle_endtag(self, tag):
        if tag in _SKIP_TAGS and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip and data.strip():
            self.pieces.append(data.strip())


def data_words(run_dir: Path) -> set[str]:
    """Words that are the user's data in this run: names from the params and the run's tables."""
    import pandas as pd

    words: set[str] = set()
    manifest = run_dir / "manifest.json"
    if manifest.exists():
        text = json.dumps(json.loads(manifest.read_text(encoding="utf-8")).get("params", {}), ensure_ascii=False)
        words |= set(WORD.findall(text))
    for path in sorted((run_dir / "tables").glob("*.parquet")):
        frame = pd.read_parquet(path)
        for column in frame.columns:
            if column in ("channel", "campaign_id", "experiment_id", "variant", "source", "metric", "model",
                          "utm_source", "utm_campaign", "device", "store_id", "other_channel", "arm",
                          "product_id", "treatment", "control", "path", "product_name", "other_product_name",
                          "category", "brand", "term", "utm_medium"):
                for value in frame[column].dropna().astype(str).unique()[:5000]:
                    words |= set(WORD.findall(value))
    words |= {p.stem for p in run_dir.rglob("*") if p.is_file()}
    words |= set(WORD.findall(run_dir.name))  # the run id
    return words


# identifiers a page names as they are: file paths, params keys, environment variables, time zones
_IDENTIFIERS = re.compile(r"[\w./-]+\.(?:parquet|json|jsonl|csv|tsv|xlsx|ipynb|html|yaml|png)\b"
                          r"|\b[a-z_]+(?:\.[a-z_]+)+\b|\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b"
                          r"|\b[A-Z][a-z]+/[A-Z][A-Za-z_]+\b|\bsha256\b|\bUTC\b|\bREADME\b")


def english_left(page: Path, allowed: set[str]) -> list[str]:
    """The visible text pieces of ``page`` that hold English words outside ``allowed`` and :data:`KEEP`."""
    parser = _Text()
    parser.feed(page.read_text(encoding="utf-8"))
    keep = {w.lower() for w in KEEP | allowed}

    def english(piece: str) -> bool:
        words = WORD.findall(_IDENTIFIERS.sub(" ", piece))
        return any(w.lower() not in keep and w.strip("-_'").lower() not in keep for w in words)

    return [piece for piece in parser.pieces if english(piece)]


def main(argv: list[str]) -> int:
    run_dir = Path(argv[0])
    allowed = data_words(run_dir)
    total = 0
    for page in sorted(run_dir.glob("*.html")):
        left = english_left(page, allowed)
        total += len(left)
        print(f"== {page.name}: {len(left)} piece(s) with English")
        for piece in dict.fromkeys(left):
            print("   ", piece[:200].replace("\n", " "))
    print(f"{total} piece(s) in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
