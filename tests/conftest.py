"""Shared fixtures: a tiny params file over tiny source files, and helpers to write notebooks."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import nbformat
import pytest

# The parity suite's shared fixtures (one SparkSession per process, the CI sample and its DuckDB run),
# available to every test file; importing them costs nothing until a test asks for one.
from tests.spark_support import ci_duckdb_run, ci_sample, engines, spark_session  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent

# Kernel noise ("Kernel is running over TCP without encryption") and matplotlib in tests: headless.
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def tiny_params(tmp_path: Path) -> Path:
    """A valid params file with one orders CSV, output under tmp_path/reports."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "orders.csv").write_text("customer,ts,amount\nA1,2026-01-02 10:00,12.5\n", encoding="utf-8")
    p = tmp_path / "params" / "tiny.yaml"
    p.parent.mkdir()
    p.write_text(textwrap.dedent("""
        run:
          name: tiny
          as_of: "2026-06-30"
          output_dir: ../reports
        sources:
          - name: shop
            kind: orders
            path: ../data/orders.csv
            columns: {customer: source_customer_id, ts: order_ts}
    """), encoding="utf-8")
    return p


@pytest.fixture
def notebook_writer():
    """``write(path, *cells)``: a notebook whose first code cell is a tagged ``parameters`` cell."""
    return write_notebook


def write_notebook(path: Path, *cells: str) -> Path:
    """Write a notebook whose first code cell is a tagged ``parameters`` cell."""
    nb = nbformat.v4.new_notebook()
    param = nbformat.v4.new_code_cell('params_path = ""\nrun_dir = ""')
    param.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}"), param]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path
