"""Progress within a stage (crmlib.progress): what stage code reports, what the runner shows on a terminal,
and that logs and pipes keep exactly one line per stage."""

import errno
import fcntl
import io
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest
from tqdm import tqdm

from crmlib import progress


@pytest.fixture(autouse=True)
def scratch_root(tmp_path: Path, monkeypatch) -> Path:
    root = tmp_path / "scratch"
    monkeypatch.setenv("CRM_SCRATCH_DIR", str(root))
    monkeypatch.delenv(progress.ENV_VAR, raising=False)
    monkeypatch.delenv("CRM_PII_SALT", raising=False)
    return root


class _Terminal(io.StringIO):
    """A text stream that says it is a terminal (what the live line is drawn on)."""

    def isatty(self) -> bool:
        return True


# -- the stage's side ------------------------------------------------------------------------------------------
def test_step_without_the_runner_writes_and_prints_nothing(tmp_path: Path, capsys):
    before = sorted(tmp_path.rglob("*"))
    progress.step("identity resolution", done=10, total=20, unit="rows")
    assert list(progress.each([1, 2], "experiments")) == [1, 2]
    assert capsys.readouterr() == ("", "")
    assert sorted(tmp_path.rglob("*")) == before


def test_step_appends_names_and_counts_only(tmp_path: Path, monkeypatch, capsys):
    path = tmp_path / "steps.jsonl"
    monkeypatch.setenv(progress.ENV_VAR, str(path))
    progress.step("reading orders.csv")
    progress.step("identity\nresolution", done="12", total=40.0, unit="customers")
    progress.step("x" * 200, done=-3, total="many")
    assert capsys.readouterr() == ("", "")  # a kernel's output would land in the notebook and its page
    steps = progress.read_steps(path)
    assert steps == [
        {"step": "reading orders.csv", "done": None, "total": None, "unit": "rows"},
        {"step": "identity resolution", "done": 12, "total": 40, "unit": "customers"},
        {"step": "x" * progress.MAX_STEP_CHARS, "done": None, "total": None, "unit": "rows"},
    ]
    assert all(set(json.loads(line)) == {"step", "done", "total", "unit"}
               for line in path.read_text(encoding="utf-8").splitlines())
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)


def test_every_report_is_kept_in_order(tmp_path: Path, monkeypatch):
    # a quick report followed by a long piece of work must not be dropped: the line would show a stale count
    path = tmp_path / "steps.jsonl"
    monkeypatch.setenv(progress.ENV_VAR, str(path))
    progress.step("CLV fit")
    for done in range(501):
        progress.step("CLV fit", done=done, total=500, unit="customers")
    steps = progress.read_steps(path)
    assert steps[0]["done"] is None and [s["done"] for s in steps[1:]] == list(range(501))


def test_each_yields_every_item_and_reports_the_count(tmp_path: Path, monkeypatch):
    path = tmp_path / "steps.jsonl"
    monkeypatch.setenv(progress.ENV_VAR, str(path))
    items = ["e1", "e2", "e3"]
    assert list(progress.each(items, "experiments", unit="experiments")) == items
    steps = progress.read_steps(path)
    assert steps[0] == {"step": "experiments", "done": 0, "total": 3, "unit": "experiments"}
    assert steps[-1] == {"step": "experiments", "done": 3, "total": 3, "unit": "experiments"}
    assert list(progress.each(iter(["a", "b"]), "sources")) == ["a", "b"]  # no len(): total is the count
    assert progress.read_steps(path)[-1] == {"step": "sources", "done": 2, "total": 2, "unit": "items"}


def test_step_never_fails_a_stage(tmp_path: Path, monkeypatch):
    monkeypatch.setenv(progress.ENV_VAR, str(tmp_path / "no such folder" / "steps.jsonl"))
    progress.step("journeys", done=1, total=2)  # an unwritable file is not the stage's problem
    assert not (tmp_path / "no such folder").exists()


def test_tail_reads_only_complete_new_lines(tmp_path: Path):
    path = tmp_path / "steps.jsonl"
    tail = progress.StepTail(path)
    assert tail.poll() == []  # nothing written yet
    with open(path, "ab") as fh:
        fh.write(b'{"step": "CLV fit", "done": 1, "total": 2, "unit": "customers"}\n{"step": "CL')
    assert [s["step"] for s in tail.poll()] == ["CLV fit"]
    with open(path, "ab") as fh:
        fh.write(b'V fit", "done": 2, "total": 2, "unit": "customers"}\nnot json\n')
    assert tail.poll() == [{"step": "CLV fit", "done": 2, "total": 2, "unit": "customers"}]
    assert tail.poll() == []


# -- the runner's side -----------------------------------------------------------------------------------------
def test_cell_counter_reads_papermills_bar():
    counter = progress.CellCounter()
    # what papermill does with execute_notebook(progress_bar=<dict>) (papermill/engines.py)
    bar = tqdm(total=7, **({"unit": "cell", "desc": "Executing"} | counter.papermill_progress_bar()))
    bar.set_description("Executing cell 3")
    bar.update(1)
    bar.update(1)
    assert (counter.done, counter.total) == (2, 7)
    bar.close()


def test_live_line_shows_step_count_cell_and_elapsed_time():
    term = _Terminal()
    line = progress.LiveLine("[2/4] segmentation", term)
    line.update([], (3, 40))  # papermill's count of cells done: the fourth is running
    line.update([{"step": "reading {orders}.csv", "done": 123456, "total": None, "unit": "rows"}])
    line.update([{"step": "CLV fit", "done": 10, "total": 20, "unit": "customers"},
                 {"step": "CLV fit", "done": 2250, "total": 5000, "unit": "customers"}], (12, 40))
    line.update([], (12, 40))
    line.update([], (13, 40))  # the step's cell is done and the next reports nothing: the step is over
    shown = term.getvalue()
    line.close()
    frames = [f.rstrip() for f in shown.split("\r") if f.strip()]
    assert frames[0] == "[2/4] segmentation [00:00]"
    assert frames[1] == "[2/4] segmentation [00:00, cell 4/40]"
    assert frames[2] == "[2/4] segmentation: reading {orders}.csv 123,456 rows [00:00, cell 4/40]"
    assert re.fullmatch(r"\[2/4\] segmentation: CLV fit  45%\|.+\| 2,250/5,000 customers \[00:00, cell 13/40\]",
                        frames[3])
    assert frames[4] == frames[3]
    assert frames[5] == "[2/4] segmentation [00:00, cell 14/40]"
    erased = term.getvalue()[len(shown):]
    assert erased.strip() == "" and erased.endswith("\r")  # the stage's own line then starts on a clean line


def test_stage_display_off_shows_nothing_and_sets_nothing(tmp_path: Path):
    term = _Terminal()
    with progress.stage_display("[1/4] ingest", term, enabled=False, steps_file=tmp_path / "s.jsonl") as display:
        assert progress.ENV_VAR not in os.environ
        assert display.papermill_progress_bar is False  # papermill draws nothing, as before
        display.tick()
    assert term.getvalue() == ""


def test_stage_display_on_gives_the_kernel_its_file_and_cleans_up(tmp_path: Path):
    term = _Terminal()
    steps_file = tmp_path / "progress-ingest.jsonl"
    with progress.stage_display("[1/4] ingest", term, enabled=True, steps_file=steps_file) as display:
        assert os.environ[progress.ENV_VAR] == str(steps_file)
        assert display.papermill_progress_bar["file"] is not None
        progress.step("identity resolution", done=5, total=None, unit="customers")
    assert "[1/4] ingest: identity resolution 5 customers [00:00]" in term.getvalue()  # shown once at the end
    assert progress.ENV_VAR not in os.environ and not steps_file.exists()


def test_a_terminal_that_goes_away_does_not_stop_the_stage(tmp_path: Path):
    class HungUp(_Terminal):
        def write(self, text: str) -> int:
            if self.hung_up:
                raise OSError(errno.EIO, "Input/output error")
            return super().write(text)

    term = HungUp()
    term.hung_up = False
    with progress.stage_display("[3/4] roi", term, enabled=True, steps_file=tmp_path / "s.jsonl") as display:
        term.hung_up = True
        progress.step("journeys")
        display.tick()
        display.tick()
    assert term.getvalue().startswith("\r[3/4] roi [00:00]")
    assert progress.ENV_VAR not in os.environ


def test_is_terminal(monkeypatch):
    assert not progress.is_terminal(io.StringIO())
    assert not progress.is_terminal(object())
    leader, follower = pty.openpty()
    with os.fdopen(follower, "w") as stream:
        monkeypatch.setenv("TERM", "xterm")
        assert progress.is_terminal(stream)
        monkeypatch.setenv("TERM", "dumb")
        assert not progress.is_terminal(stream)
    os.close(leader)


# -- crm run, end to end -------------------------------------------------------------------------------------
_CRM_WITH_NOTEBOOKS = ("import sys; from pathlib import Path; import crmlib.runner as r; "
                       "r.NOTEBOOKS_DIR = Path(sys.argv[1]); from crmlib.cli import main; sys.exit(main(sys.argv[2:]))")
#: stdout of a run with two notebooks: one line per stage, then the report and the run directory
_STAGE_LINES = [r"\[1/4\] ingest: ok in \d+\.\d s", r"\[2/4\] segmentation: ok in \d+\.\d s",
                r"\[3/4\] roi: skipped \(.+\)", r"\[4/4\] ab_tests: skipped \(.+\)", r"report: .+index\.html", r".+"]


@pytest.fixture
def reporting_notebooks(tmp_path: Path, notebook_writer) -> Path:
    d = tmp_path / "nbs"
    notebook_writer(d / "01_ingest.ipynb",
                    "from crmlib import progress\nprogress.step('reading shop.csv', done=7, total=10, unit='rows')",
                    "import time\ntime.sleep(2.5)  # a long cell that reports no step")
    notebook_writer(d / "02_segmentation.ipynb",
                    "from crmlib import progress\n"
                    "seen = [e for e in progress.each(['e1', 'e2', 'e3'], 'experiments', unit='experiments')]")
    return d


class _OnTerminal:
    """A child process whose stderr is a pseudo-terminal (drained while it runs: a full terminal buffer
    would stall it) and whose stdout is a pipe."""

    def __init__(self, cmd: list[str], env: dict) -> None:
        self._leader, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
        self.child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=follower, env=env)
        os.close(follower)
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read)
        self._reader.start()

    def _read(self) -> None:
        while True:
            ready, _, _ = select.select([self._leader], [], [], 1.0)
            if not ready:
                if self.child.poll() is not None:
                    return
                continue
            try:
                data = os.read(self._leader, 4096)
            except OSError:  # EIO: every writer closed the terminal
                return
            if not data:
                return
            self._chunks.append(data)

    def text(self) -> str:
        return b"".join(self._chunks).decode("utf-8", "replace")

    def wait_for(self, needle: str, timeout_s: float = 240) -> None:
        deadline = time.monotonic() + timeout_s
        while needle not in self.text():
            assert self.child.poll() is None and time.monotonic() < deadline, self.text()
            time.sleep(0.1)

    def finish(self) -> tuple[str, str, int]:
        stdout = self.child.communicate(timeout=300)[0].decode()
        self._reader.join(30)
        os.close(self._leader)
        return stdout, self.text(), self.child.returncode


def _crm_command(notebooks: Path, params: Path, *extra: str) -> list[str]:
    return [sys.executable, "-c", _CRM_WITH_NOTEBOOKS, str(notebooks), "run", "--params", str(params), *extra]


def _crm_run(notebooks: Path, params: Path, *extra: str, stderr_on_terminal: bool) -> tuple[str, str, int]:
    """``crm run`` in a child process; stdout through a pipe, stderr on a pseudo-terminal or a pipe."""
    cmd, env = _crm_command(notebooks, params, *extra), os.environ | {"TERM": "xterm"}
    if not stderr_on_terminal:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        return res.stdout, res.stderr, res.returncode
    return _OnTerminal(cmd, env).finish()


def _assert_one_line_per_stage(stdout: str) -> None:
    lines = stdout.splitlines()
    assert len(lines) == len(_STAGE_LINES), stdout
    for line, pattern in zip(lines, _STAGE_LINES):
        assert re.fullmatch(pattern, line), (line, pattern)


def test_on_a_terminal_the_live_line_follows_steps_and_elapsed_time(tiny_params: Path, reporting_notebooks: Path):
    stdout, terminal, code = _crm_run(reporting_notebooks, tiny_params, stderr_on_terminal=True)
    assert code == 0, terminal
    _assert_one_line_per_stage(stdout)  # stdout is unchanged by the live line
    frames = [f.strip() for f in terminal.replace("\n", "\r").split("\r") if f.strip()]
    ingest = [f for f in frames if f.startswith("[1/4] ingest")]
    assert any(re.fullmatch(r"\[1/4\] ingest: reading shop\.csv +70%\|.+\| 7/10 rows \[00:0\d, cell \d/\d\]", f)
               for f in ingest), ingest
    # the cell that reports nothing for 2.5 s: its elapsed time ticks (the papermill cell counter beside it)
    ticking = {re.search(r"\[(00:\d\d), cell", f).group(1) for f in ingest if ", cell" in f}
    assert {"00:01", "00:02"} <= ticking, ingest
    assert any(re.fullmatch(r"\[2/4\] segmentation: experiments +100%\|.+\| 3/3 experiments \[00:\d\d.*\]", f)
               for f in frames), frames
    run_dir = Path(stdout.splitlines()[-1])
    assert not list(run_dir.rglob("progress-*")), "the steps file belongs to the scratch folder"
    pages = "".join(p.read_text(encoding="utf-8") for p in run_dir.glob("*.html"))
    assert "7/10" not in pages and "cell 1/" not in pages


def test_through_pipes_the_output_is_one_line_per_stage(tiny_params: Path, reporting_notebooks: Path):
    stdout, stderr, code = _crm_run(reporting_notebooks, tiny_params, stderr_on_terminal=False)
    assert code == 0, stderr
    _assert_one_line_per_stage(stdout)
    assert "\r" not in stdout + stderr
    assert "reading shop.csv" not in stderr and "cell" not in stderr and "experiments" not in stderr
    assert stderr.strip() == ("crm run: warning: customer keys use the public default salt; set CRM_PII_SALT "
                              "(or privacy.salt) to a secret value so that keys cannot be recomputed from emails "
                              "and phones (README, Privacy)")


def test_no_progress_keeps_a_terminal_to_one_line_per_stage(tiny_params: Path, reporting_notebooks: Path):
    stdout, terminal, code = _crm_run(reporting_notebooks, tiny_params, "--no-progress", stderr_on_terminal=True)
    assert code == 0, terminal
    _assert_one_line_per_stage(stdout)
    assert "\r" not in terminal.replace("\r\n", "\n")  # the terminal turns \n into \r\n; nothing is redrawn
    assert "reading shop.csv" not in terminal and "cell" not in terminal


def test_ctrl_c_during_a_live_line_leaves_a_clean_terminal_and_nothing_behind(tiny_params: Path, tmp_path: Path,
                                                                               notebook_writer, scratch_root: Path):
    notebooks = tmp_path / "slow"
    notebook_writer(notebooks / "01_ingest.ipynb",
                    "import time\nfrom crmlib import progress\nprogress.step('waiting for Ctrl-C')\ntime.sleep(120)")
    term = _OnTerminal(_crm_command(notebooks, tiny_params), os.environ | {"TERM": "xterm"})
    term.wait_for("[1/4] ingest: waiting for Ctrl-C")
    term.child.send_signal(signal.SIGINT)
    stdout, terminal, code = term.finish()
    assert code == 130 and stdout == ""
    erased_line, after = terminal.replace("\r\n", "\n").rsplit("\r", 2)[-2:]  # the terminal sends \n as \r\n
    # the live line was erased, and the message was written from the start of the line
    assert erased_line.strip() == "", terminal[-400:]
    assert re.fullmatch(r"crm run: stopped by SIGINT; .+ nothing was published\.\n", after), terminal[-400:]
    assert not any(scratch_root.iterdir()), "the steps file went with the run's scratch folder"
    assert not list((tiny_params.parent.parent / "reports").glob("*/"))
