"""The runner's mechanics on tiny notebooks: order, statuses, stage dependencies, failure, manifest, atomic
publish, indexes, the output folder's lock and the clean-up of what killed runs left behind."""

import fcntl
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from crmlib.engine import make_scratch_dir
from crmlib.runner import LOCK_FILE, RunLocked, UsageError, discover_notebooks, run_pipeline


@pytest.fixture(autouse=True)
def scratch_root(tmp_path: Path, monkeypatch) -> Path:
    """Each test's scratch directories in its own folder, so what is left behind can be checked."""
    root = tmp_path / "scratch"
    monkeypatch.setenv("CRM_SCRATCH_DIR", str(root))
    monkeypatch.delenv("CRM_PII_SALT", raising=False)
    return root


@pytest.fixture
def notebooks(tmp_path: Path, notebook_writer) -> Path:
    write_notebook = notebook_writer
    d = tmp_path / "nbs"
    write_notebook(d / "01_ingest.ipynb",
                   "from pathlib import Path\nimport pandas as pd\n"
                   "(Path(run_dir) / 'tables' / 'marker.txt').write_text('ingest')\n"
                   "pd.DataFrame({'amount': [12.5]}).to_parquet(Path(run_dir) / 'tables' / 'orders.parquet')",
                   "import sys; print('to stderr', file=sys.stderr); print('visible output')")
    write_notebook(d / "02_segmentation.ipynb",
                   "from pathlib import Path\nassert (Path(run_dir) / 'tables' / 'marker.txt').exists()")
    return d


@pytest.fixture
def four_kinds_params(tiny_params: Path) -> Path:
    """``tiny_params`` plus touchpoints and experiments sources, so every stage has its input kinds."""
    data = tiny_params.parent.parent / "data"
    (data / "touches.csv").write_text("touch_ts,channel\n2026-01-01 09:00,email\n", encoding="utf-8")
    (data / "exp.csv").write_text("experiment_id,source_customer_id,variant,assigned_ts\n"
                                  "e1,A1,control,2026-01-01\n", encoding="utf-8")
    text = tiny_params.read_text(encoding="utf-8") + textwrap.indent(textwrap.dedent("""\
        - name: touches
          kind: touchpoints
          path: ../data/touches.csv
        - name: exp
          kind: experiments
          path: ../data/exp.csv
    """), "  ")
    tiny_params.write_text(text, encoding="utf-8")
    return tiny_params


def _manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))


def test_discover_in_filename_order(notebooks: Path):
    assert list(discover_notebooks(notebooks)) == ["ingest", "segmentation"]


def test_run_publishes_ok_run(tiny_params: Path, notebooks: Path, scratch_root: Path, capsys):
    res = run_pipeline(tiny_params, notebooks_dir=notebooks, run_id="r1")
    out = capsys.readouterr().out.strip().splitlines()
    assert res.ok and res.status == "ok"
    assert out[-1] == str(res.run_dir)  # the last stdout line is the run directory
    assert [line.split(":")[0] for line in out[:4]] == ["[1/4] ingest", "[2/4] segmentation", "[3/4] roi",
                                                        "[4/4] ab_tests"]
    m = _manifest(res.run_dir)
    status = {s["stage"]: s for s in m["stages"]}
    assert status["ingest"]["status"] == "ok" and status["segmentation"]["status"] == "ok"
    assert status["roi"]["status"] == "skipped" and "no notebook" in status["roi"]["reason"]
    assert m["status"] == "ok" and m["inputs"][0]["sha256"] and m["inputs"][0]["size"] > 0
    assert "pandas" in m["packages"] and m["params"]["run"]["name"] == "tiny"
    html = (res.run_dir / "01_ingest.html").read_text()
    assert "visible output" in html and "to stderr" not in html
    assert "run_dir =" not in html  # parameter cells and code are hidden
    assert "<title>Ingest and identity resolution - r1</title>" in html
    output_dir = res.run_dir.parent
    assert not list(output_dir.glob(".tmp-*"))  # built aside, moved into place
    assert "r1/index.html" in (output_dir / "index.html").read_text()
    assert not list(output_dir.rglob("*.tmp")), "index pages are written to a temporary name and renamed"
    assert not list(scratch_root.glob("crmlib-*")), "the run's scratch directory outlived it"


def test_default_run_ids_are_unique(tiny_params: Path, notebooks: Path):
    first = run_pipeline(tiny_params, notebooks_dir=notebooks, only=["ingest"])
    second = run_pipeline(tiny_params, notebooks_dir=notebooks, only=["ingest"])
    pattern = r"tiny_\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{4}"
    assert re.fullmatch(pattern, first.run_id) and re.fullmatch(pattern, second.run_id)
    assert first.run_id != second.run_id and first.run_dir.is_dir() and second.run_dir.is_dir()


def test_stage_without_its_input_kind_is_skipped(tiny_params: Path, tmp_path: Path, notebook_writer):
    write_notebook = notebook_writer
    nbs = tmp_path / "nbs2"
    write_notebook(nbs / "04_ab_tests.ipynb", "1 / 0")
    res = run_pipeline(tiny_params, notebooks_dir=nbs, run_id="r2")
    ab = next(s for s in res.stages if s.stage == "ab_tests")
    assert ab.status == "skipped" and ab.reason == "no input of kind experiments in the params" and res.ok


def test_failing_stage_skips_its_dependents_with_whole_message(tiny_params: Path, tmp_path: Path,
                                                                 notebook_writer, capsys):
    write_notebook = notebook_writer
    nbs = tmp_path / "nbs3"
    message = ("source 'shop', file orders.csv: required column 'amount' is missing\n"
               "  columns in the file: customer, ts, total\n"
               "  fix: map it in the params, e.g. columns: {total: amount}")
    write_notebook(nbs / "01_ingest.ipynb", f"raise ValueError({message!r})")
    write_notebook(nbs / "02_segmentation.ipynb", "print('never')")
    res = run_pipeline(tiny_params, notebooks_dir=nbs, run_id="r3")
    assert not res.ok and res.failed_stage == "ingest" and res.status == "failed"
    seg = next(s for s in res.stages if s.stage == "segmentation")
    assert seg.status == "skipped" and seg.reason == "needs tables of the failed stage ingest"
    err = capsys.readouterr().err
    assert "fix: map it in the params, e.g. columns: {total: amount}" in err  # every line, not the first
    assert "Traceback" not in err
    m = _manifest(res.run_dir)
    assert m["status"] == "failed" and m["failed_stage"] == "ingest"
    assert m["stages"][0]["error"].startswith("ValueError: source 'shop'")
    assert "columns in the file: customer, ts, total" in m["stages"][0]["error"]
    html = (res.run_dir / "01_ingest.html").read_text()
    assert "required column" in html and "Traceback" not in html
    page = (res.run_dir / "index.html").read_text()
    assert "fix: map it in the params" in page
    index = (res.run_dir.parent / "index.html").read_text()
    assert "failed" in index and "stage ingest" in index


def test_failed_stage_skips_only_the_stages_that_need_its_tables(four_kinds_params: Path, tmp_path: Path,
                                                                  notebook_writer):
    nbs = tmp_path / "nbs4"
    for name in ("01_ingest", "03_roi", "04_ab_tests"):
        notebook_writer(nbs / f"{name}.ipynb", "print('ran')")
    notebook_writer(nbs / "02_segmentation.ipynb", "raise RuntimeError('Gamma-Gamma blew up')")
    res = run_pipeline(four_kinds_params, notebooks_dir=nbs, run_id="r4")
    status = {s.stage: s.status for s in res.stages}
    # ROI only uses segmentation's CLV when present, A/B tests need nothing of it: both run
    assert status == {"ingest": "ok", "segmentation": "failed", "roi": "ok", "ab_tests": "ok"}
    assert not res.ok


def test_failed_ingest_skips_every_later_stage(four_kinds_params: Path, tmp_path: Path, notebook_writer):
    nbs = tmp_path / "nbs5"
    notebook_writer(nbs / "01_ingest.ipynb", "raise RuntimeError('unusable input')")
    for name in ("02_segmentation", "03_roi", "04_ab_tests"):
        notebook_writer(nbs / f"{name}.ipynb", "print('ran')")
    res = run_pipeline(four_kinds_params, notebooks_dir=nbs, run_id="r5")
    assert [(s.status, s.reason) for s in res.stages[1:]] == [
        ("skipped", "needs tables of the failed stage ingest")] * 3


def test_stage_with_recorded_warnings_is_ok_with_warnings(tiny_params: Path, tmp_path: Path, notebook_writer,
                                                          capsys):
    nbs = tmp_path / "nbs6"
    notebook_writer(nbs / "01_ingest.ipynb", "print('ingested')")
    notebook_writer(nbs / "02_segmentation.ipynb",
                    "from crmlib.status import guard, CannotCompute\n"
                    "def fit():\n    raise CannotCompute('needs at least 3 customers with repeat purchases; found 0')\n"
                    "result = guard(run_dir, 'segmentation', 'Gamma-Gamma spend model', fit)\n"
                    "print(repr(result))")
    res = run_pipeline(tiny_params, notebooks_dir=nbs, run_id="r6")
    assert res.ok and res.status == "ok_with_warnings"
    seg = next(s for s in res.stages if s.stage == "segmentation")
    assert seg.status == "ok_with_warnings"
    assert seg.warnings == [{"step": "Gamma-Gamma spend model",
                             "message": "needs at least 3 customers with repeat purchases; found 0"}]
    assert "ok with warnings" in capsys.readouterr().out
    m = _manifest(res.run_dir)
    assert m["status"] == "ok_with_warnings" and m["stages"][0]["status"] == "ok"
    assert m["stages"][1]["warnings"][0]["step"] == "Gamma-Gamma spend model"
    page = (res.run_dir / "index.html").read_text()
    assert "ok with warnings" in page and "needs at least 3 customers with repeat purchases" in page


def test_existing_or_unsafe_run_id_is_refused_before_anything_is_made(tiny_params: Path, notebooks: Path):
    run_pipeline(tiny_params, notebooks_dir=notebooks, run_id="same")
    with pytest.raises(UsageError, match="already exists"):
        run_pipeline(tiny_params, notebooks_dir=notebooks, run_id="same")
    output_dir = tiny_params.parent.parent / "reports"
    before = sorted(p.name for p in output_dir.iterdir())
    for bad in ("../../escaped", "a/b", "..", ".hidden"):
        with pytest.raises(UsageError, match="--run-id"):
            run_pipeline(tiny_params, notebooks_dir=notebooks, run_id=bad)
    assert sorted(p.name for p in output_dir.iterdir()) == before
    assert not (tiny_params.parent.parent.parent / "escaped").exists()


def test_unknown_only_stage_creates_nothing(tiny_params: Path, notebooks: Path):
    with pytest.raises(UsageError, match="unknown stage"):
        run_pipeline(tiny_params, notebooks_dir=notebooks, only=["segmentaton"])
    assert not (tiny_params.parent.parent / "reports").exists()


def test_only_reuses_upstream_tables_and_lists_the_rest_as_not_selected(tiny_params: Path, notebooks: Path):
    first = run_pipeline(tiny_params, notebooks_dir=notebooks, run_id="a1")
    again = run_pipeline(tiny_params, notebooks_dir=notebooks, run_id="a2", only=["segmentation"])
    assert again.ok
    m = _manifest(again.run_dir)
    assert m["based_on"] == first.run_dir.name and m["only"] == ["segmentation"]
    assert m["stages"][0]["status"] == "skipped"
    assert m["stages"][0]["reason"] == "not selected; tables from run a1"
    assert m["stages"][1]["status"] == "ok"
    page = (again.run_dir / "index.html").read_text()
    assert "not selected; tables from run a1" in page
    index = (again.run_dir.parent / "index.html").read_text()
    row = next(r for r in index.split("<tr") if "a2/index.html" in r)
    assert "ran only segmentation" in row and "not selected" in row and "from run a1" in row


def test_only_stage_whose_tables_no_run_has_fails_the_run(tiny_params: Path, tmp_path: Path, notebook_writer):
    # the operator asked for segmentation by name: finding nothing to run on is a failure, not a success
    nbs = tmp_path / "nbs7"
    notebook_writer(nbs / "01_ingest.ipynb", "print('x')")
    notebook_writer(nbs / "02_segmentation.ipynb", "print('y')")
    res = run_pipeline(tiny_params, notebooks_dir=nbs, run_id="o1", only=["segmentation"])
    seg = res.stages[1]
    assert seg.status == "failed" and "needs table orders (written by stage ingest)" in seg.reason
    assert not res.ok and res.failed_stage == "segmentation"
    assert res.stages[0].status == "skipped" and "no earlier run" in res.stages[0].reason


def test_second_run_on_a_locked_output_folder_is_refused_and_touches_nothing(tiny_params: Path, notebooks: Path):
    output_dir = tiny_params.parent.parent / "reports"
    output_dir.mkdir()
    leftover = output_dir / ".tmp-someone-elses-run"
    leftover.mkdir()
    with open(output_dir / LOCK_FILE, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RunLocked, match="another crm run"):
            run_pipeline(tiny_params, notebooks_dir=notebooks, run_id="blocked")
    assert leftover.is_dir() and not (output_dir / "blocked").exists()
    assert not (output_dir / ".tmp-blocked").exists()


def test_leftovers_of_killed_runs_are_removed(tiny_params: Path, notebooks: Path, scratch_root: Path, capsys):
    output_dir = tiny_params.parent.parent / "reports"
    dead_run = output_dir / ".tmp-tiny_20260101T000000.000Z-dead"
    (dead_run / "tables").mkdir(parents=True)
    (dead_run / ".ingest_tmp").mkdir()
    (dead_run / ".ingest_tmp" / "contacts.utf8.csv").write_text("name,phone\nWang Fang,13800138000\n")
    old_interactive = output_dir / "interactive" / "tiny"
    old_interactive.mkdir(parents=True)
    (old_interactive / "engine.duckdb").write_bytes(b"old engine file with raw emails")
    # a scratch directory whose process died without cleaning up (os._exit skips atexit)
    code = "import os; from crmlib.engine import make_scratch_dir; print(make_scratch_dir()[0]); os._exit(0)"
    dead_scratch = Path(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True, env=os.environ).stdout.strip())
    live_scratch, live_lock = make_scratch_dir()  # ours, alive: must stay
    try:
        assert dead_scratch.is_dir() and dead_scratch.parent == scratch_root
        run_pipeline(tiny_params, notebooks_dir=notebooks, run_id="after-kill")
        assert not dead_run.exists() and not (old_interactive / "engine.duckdb").exists()
        assert not dead_scratch.exists() and live_scratch.is_dir()
        assert "removed what killed runs left behind" in capsys.readouterr().out
    finally:
        os.close(live_lock)


def test_manifest_and_pages_never_hold_the_salt(tiny_params: Path, notebooks: Path, capsys):
    secret = "s3cret-salt-4f9a1c"
    tiny_params.write_text(tiny_params.read_text() + f"privacy:\n  salt: {secret}\n", encoding="utf-8")
    res = run_pipeline(tiny_params, notebooks_dir=notebooks, run_id="salted")
    published = [p for p in res.run_dir.parent.rglob("*") if p.is_file()]
    assert published and not [p for p in published if secret.encode() in p.read_bytes()]
    m = _manifest(res.run_dir)
    assert m["params"]["privacy"]["salt"] is None and m["params"]["privacy"]["salt_source"] == "params"
    assert "default salt" not in capsys.readouterr().err


def test_default_salt_is_announced_on_stderr_and_on_the_run_page(tiny_params: Path, notebooks: Path, capsys):
    res = run_pipeline(tiny_params, notebooks_dir=notebooks, run_id="unsalted")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "public default salt" in err[0] and "CRM_PII_SALT" in err[0]
    assert _manifest(res.run_dir)["privacy"]["salt_source"] == "default"
    assert "public default salt" in (res.run_dir / "index.html").read_text()


def test_env_salt_is_not_announced(tiny_params: Path, notebooks: Path, monkeypatch, capsys):
    monkeypatch.setenv("CRM_PII_SALT", "from-the-environment-123")
    res = run_pipeline(tiny_params, notebooks_dir=notebooks, run_id="envsalt")
    assert capsys.readouterr().err == ""
    assert _manifest(res.run_dir)["privacy"]["salt_source"] == "env"
    assert b"from-the-environment-123" not in (res.run_dir / "manifest.json").read_bytes()


def test_as_of_written_by_ingest_goes_into_the_manifest(tiny_params: Path, tmp_path: Path, notebook_writer):
    nbs = tmp_path / "nbs8"
    notebook_writer(nbs / "01_ingest.ipynb",
                    "import json, pathlib\n(pathlib.Path(run_dir) / 'tables' / 'as_of.json').write_text("
                    "json.dumps({'as_of': '2026-06-30T23:59:59', 'source': 'params'}))")
    res = run_pipeline(tiny_params, notebooks_dir=nbs, run_id="asof")
    assert _manifest(res.run_dir)["as_of"] == {"as_of": "2026-06-30T23:59:59", "source": "params"}
    assert "2026-06-30T23:59:59 (params)" in (res.run_dir / "index.html").read_text()


def test_kernel_shutdown_does_not_interrupt_the_kernel(tiny_params: Path, notebooks: Path, monkeypatch):
    """jupyter_client interrupts a kernel before shutting it down; the runner's kernel manager does not
    (that interrupt was the source of 'KeyboardInterrupt caught in kernel' on stderr)."""
    from crmlib import runner

    interrupts = []
    cls = runner._kernel_manager_class()
    parent = cls.__mro__[1]
    original = parent._async_interrupt_kernel

    async def counting(self):
        interrupts.append(self.shutting_down)
        await original(self)

    monkeypatch.setattr(parent, "_async_interrupt_kernel", counting)
    run_pipeline(tiny_params, notebooks_dir=notebooks, run_id="quiet")
    assert interrupts == [], "the kernel got an interrupt at shutdown"


def test_run_page_is_a_brief_with_kpis_compared_to_the_previous_run(tiny_params: Path, tmp_path: Path,
                                                                    notebook_writer):
    # each run's ingest writes orders with one more customer than the last, so the KPI panel has a change
    nbs = tmp_path / "nbs_brief"
    notebook_writer(nbs / "01_ingest.ipynb",
                    "import json, pathlib\nimport pandas as pd\n"
                    "tables = pathlib.Path(run_dir) / 'tables'\n"
                    "reports = pathlib.Path(run_dir).parent\n"
                    "n = 2 + len([p for p in reports.glob('*/kpis.json')])\n"
                    "pd.DataFrame({'customer_key': [f'c{i}' for i in range(n)],"
                    " 'order_ts': pd.to_datetime(['2026-06-01'] * n), 'amount': [10.0] * n}"
                    ").to_parquet(tables / 'orders.parquet')\n"
                    "(tables / 'as_of.json').write_text(json.dumps({'as_of': '2026-06-30', 'source': 'params'}))")
    first = run_pipeline(tiny_params, notebooks_dir=nbs, run_id="b1")
    second = run_pipeline(tiny_params, notebooks_dir=nbs, run_id="b2")
    assert json.loads((first.run_dir / "kpis.json").read_text())["kpis"]["customers"] == 2
    page = (second.run_dir / "index.html").read_text()
    assert page.index("What this run says") < page.index("Key measures") < page.index(">Stages<")
    card = page[page.index("<span class='k'>customers</span>"):]
    assert "+50.0% vs the previous run" in card[:card.index("</div>")]  # 3 customers now, 2 in run b1
    assert "How the totals relate" in page and "Input files and data quality" in page


def test_a_chinese_run_has_chinese_pages_and_an_english_console(tiny_params: Path, tmp_path: Path, notebook_writer,
                                                                 capsys):
    import html

    from crmlib.i18n import _, set_language
    from crmlib.runner import DEFAULT_SALT_WARNING

    tiny_params.write_text(tiny_params.read_text(encoding="utf-8").replace(
        "  name: tiny\n", "  name: tiny\n  language: zh-CN\n"), encoding="utf-8")
    nbs = tmp_path / "nbs_zh"
    notebook_writer(nbs / "01_ingest.ipynb", "print('x')")
    notebook_writer(nbs / "04_ab_tests.ipynb", "print('y')")
    try:
        res = run_pipeline(tiny_params, notebooks_dir=nbs, run_id="zh1")
        out = capsys.readouterr().out
        ab = next(s for s in res.stages if s.stage == "ab_tests")
        # the manifest's reason and the console stay English for scripts and the scheduler's log
        assert ab.reason == "no input of kind experiments in the params"
        assert "[4/4] ab_tests: skipped (no input of kind experiments in the params)" in out
        shown = _("no input of kind {kinds} in the params").format(kinds=_("experiments"))
        assert ab.reason_text == shown != ab.reason
        assert _manifest(res.run_dir)["stages"][3]["reason_text"] == shown
        page = (res.run_dir / "index.html").read_text(encoding="utf-8")
        assert '<html lang="zh-CN">' in page and html.escape(shown) in page
        assert f"<span class='skipped'>{_('skipped')}</span>" in page and _("skipped") != "skipped"
        assert html.escape(_(DEFAULT_SALT_WARNING)) in page and DEFAULT_SALT_WARNING not in page
        stage_page = (res.run_dir / "01_ingest.html").read_text(encoding="utf-8")
        assert '<html lang="zh-CN">' in stage_page
        assert _("Run overview") in stage_page and ">Run overview<" not in stage_page
        index = (res.run_dir.parent / "index.html").read_text(encoding="utf-8")
        assert '<html lang="zh-CN">' in index and _("CRM analytics runs") in index
        assert "CRM analytics runs" not in index
    finally:
        set_language("en")
