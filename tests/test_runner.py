"""The runner's mechanics on tiny notebooks: order, skips, failure, manifest, atomic publish, indexes."""

import json
from pathlib import Path

import pytest

from crmlib.runner import discover_notebooks, run_pipeline


@pytest.fixture
def notebooks(tmp_path: Path, notebook_writer) -> Path:
    write_notebook = notebook_writer
    d = tmp_path / "nbs"
    write_notebook(d / "01_ingest.ipynb",
                   "from pathlib import Path\n(Path(run_dir) / 'tables' / 'marker.txt').write_text('ingest')",
                   "import sys; print('to stderr', file=sys.stderr); print('visible output')")
    write_notebook(d / "02_segmentation.ipynb",
                   "from pathlib import Path\nassert (Path(run_dir) / 'tables' / 'marker.txt').exists()")
    return d


def test_discover_in_filename_order(notebooks: Path):
    assert list(discover_notebooks(notebooks)) == ["ingest", "segmentation"]


def test_run_publishes_ok_run(tiny_params: Path, notebooks: Path, capsys):
    res = run_pipeline(tiny_params, notebooks_dir=notebooks, run_id="r1")
    out = capsys.readouterr().out.strip().splitlines()
    assert res.ok
    assert out[-1] == str(res.run_dir)  # the last stdout line is the run directory
    assert [line.split(":")[0] for line in out[:4]] == ["[1/4] ingest", "[2/4] segmentation", "[3/4] roi",
                                                        "[4/4] ab_tests"]
    m = json.loads((res.run_dir / "manifest.json").read_text())
    status = {s["stage"]: s for s in m["stages"]}
    assert status["ingest"]["status"] == "ok" and status["segmentation"]["status"] == "ok"
    assert status["roi"]["status"] == "skipped" and "no notebook" in status["roi"]["reason"]
    assert m["status"] == "ok" and m["inputs"][0]["sha256"] and m["inputs"][0]["size"] > 0
    assert "pandas" in m["packages"] and m["params"]["run"]["name"] == "tiny"
    html = (res.run_dir / "01_ingest.html").read_text()
    assert "visible output" in html and "to stderr" not in html
    assert "run_dir =" not in html  # parameter cells and code are hidden
    assert "<title>Ingest and identity resolution - r1</title>" in html
    assert not list(res.run_dir.parent.glob(".tmp-*"))  # built aside, moved into place
    index = (res.run_dir.parent / "index.html").read_text()
    assert "r1/index.html" in index


def test_stage_without_its_input_kind_is_skipped(tiny_params: Path, tmp_path: Path, notebook_writer):
    write_notebook = notebook_writer
    nbs = tmp_path / "nbs2"
    write_notebook(nbs / "04_ab_tests.ipynb", "1 / 0")
    res = run_pipeline(tiny_params, notebooks_dir=nbs, run_id="r2")
    ab = next(s for s in res.stages if s.stage == "ab_tests")
    assert ab.status == "skipped" and "experiments" in ab.reason and res.ok


def test_failing_stage_stops_run_and_is_marked(tiny_params: Path, tmp_path: Path, notebook_writer):
    write_notebook = notebook_writer
    nbs = tmp_path / "nbs3"
    write_notebook(nbs / "01_ingest.ipynb", "raise ValueError('orders.csv row 3, column amount: not a number')")
    write_notebook(nbs / "02_segmentation.ipynb", "print('never')")
    res = run_pipeline(tiny_params, notebooks_dir=nbs, run_id="r3")
    assert not res.ok and res.failed_stage == "ingest"
    seg = next(s for s in res.stages if s.stage == "segmentation")
    assert seg.status == "skipped" and "earlier stage failed" in seg.reason
    m = json.loads((res.run_dir / "manifest.json").read_text())
    assert m["status"] == "failed" and m["failed_stage"] == "ingest"
    assert "ValueError" in m["stages"][0]["error"]
    html = (res.run_dir / "01_ingest.html").read_text()
    assert "not a number" in html and "Traceback" not in html
    index = (res.run_dir.parent / "index.html").read_text()
    assert "failed" in index and "stage ingest" in index


def test_existing_run_id_is_refused(tiny_params: Path, notebooks: Path):
    run_pipeline(tiny_params, notebooks_dir=notebooks, run_id="same")
    with pytest.raises(FileExistsError):
        run_pipeline(tiny_params, notebooks_dir=notebooks, run_id="same")


def test_only_reuses_upstream_tables_of_last_ok_run(tiny_params: Path, notebooks: Path):
    first = run_pipeline(tiny_params, notebooks_dir=notebooks, run_id="a1")
    again = run_pipeline(tiny_params, notebooks_dir=notebooks, run_id="a2", only=["segmentation"])
    assert again.ok
    m = json.loads((again.run_dir / "manifest.json").read_text())
    assert m["based_on"] == first.run_dir.name
    assert m["stages"][0]["status"] == "skipped" and m["stages"][1]["status"] == "ok"
