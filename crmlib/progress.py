"""Progress within a long stage: steps the stage code reports, shown live by ``crm run`` on a terminal.

Two sides, in two processes:

* **Stage code** (in papermill's kernel) calls :func:`step` - ``step("identity resolution")``,
  ``step("CLV fit", done=2_000, total=5_000, unit="customers")`` - or wraps a loop in :func:`each`. When
  the runner shows progress it sets :data:`ENV_VAR` in the kernel's environment to a file in the run's
  private scratch directory, and each call appends one JSON line there. Otherwise (a scheduler, a log
  file, a notebook opened in JupyterLab) a call does nothing: it never prints, so nothing reaches the
  notebook, its HTML page or a log.
* **The runner** wraps each stage in :func:`stage_display`. When its error stream is a terminal, that
  shows one live line (a ``tqdm`` bar on stderr): the stage, the step reported last, its count and
  total where known, the stage's elapsed time and papermill's cell counter (``cell 12/40``, which is all
  there is while a cell that reports no step runs). The line is redrawn every fraction of a second, so
  the elapsed time keeps ticking during a long cell, and erased when the stage ends, before the runner
  prints its one line per stage. On anything else the runner's output is exactly that one line per stage.

Only step names, counts and units travel through the file: no data values (the line must never show
PII). Names are cut at :data:`MAX_STEP_CHARS` characters and kept on one line.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, TextIO, TypeVar

__all__ = ["ENV_VAR", "MAX_STEP_CHARS", "TICK_S", "step", "each", "read_steps", "StepTail", "CellCounter", "LiveLine",
           "stage_display", "is_terminal"]

#: Set by the runner in the kernel's environment: the file :func:`step` appends its JSON lines to.
ENV_VAR = "CRM_PROGRESS_FILE"
#: Step names and units longer than this are cut (a live line is one terminal line).
MAX_STEP_CHARS = 60
#: How often the runner redraws the live line while a stage runs.
TICK_S = 0.2

T = TypeVar("T")


def _one_line(text: Any) -> str:
    return re.sub(r"\s+", " ", str(text)).strip()[:MAX_STEP_CHARS]


def _count(value: Any) -> int | None:
    """A count as an int, or None when it is not a finite non-negative number (never fails a stage)."""
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number >= 0 else None


def step(name: str, done: int | None = None, total: int | None = None, unit: str = "rows") -> None:
    """Report the step a stage is doing now, with how much of it is done where known.

    Does nothing unless the runner set :data:`ENV_VAR` (it does on a terminal only). Never raises and
    never prints: progress must not fail a stage or reach its page. Every call is written (one short
    line, some microseconds): report coarse steps, or the items of a loop over sources, experiments or
    batches, not rows.

    Parameters
    ----------
    name : str
        What is being done, in plain English (``"reading orders.csv"``, ``"RFM"``, ``"CLV fit"``). A step
        name only: never a data value.
    done, total : int, optional
        Units done so far and in all, when known. ``done`` alone is shown as a count (``1,000
        customers``: done, or being worked on); ``total`` alone as ``0/total``.
    unit : str
        What is counted: ``"rows"``, ``"customers"``, ``"experiments"``...
    """
    path = os.environ.get(ENV_VAR)
    if not path:
        return
    line = json.dumps({"step": _one_line(name), "done": _count(done), "total": _count(total),
                       "unit": _one_line(unit)}, ensure_ascii=False) + "\n"
    try:
        # one write() of a line opened for appending: a reader never sees half a line from two writers
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)
    except OSError:
        return


def each(items: Iterable[T], name: str, *, unit: str = "items", total: int | None = None) -> Iterator[T]:
    """Yield ``items``, reporting ``name`` with how many were done before each one and after the last.

    ``for experiment in progress.each(experiments, "experiments", unit="experiments"):`` turns a loop into
    a step with a count. ``total`` defaults to ``len(items)`` when ``items`` has a length.
    """
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    done = 0
    for item in items:
        step(name, done=done, total=total, unit=unit)
        yield item
        done += 1
    step(name, done=done, total=total if total is not None else done, unit=unit)


# -- the runner's side -------------------------------------------------------------------------------------
def read_steps(path: str | Path) -> list[dict]:
    """Every step recorded in ``path`` (a :data:`ENV_VAR` file), in order; malformed lines are skipped."""
    tail = StepTail(path)
    return tail.poll()


class StepTail:
    """Reads the steps appended to a :data:`ENV_VAR` file since the last :meth:`poll`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._offset = 0
        self._partial = b""

    def poll(self) -> list[dict]:
        """The complete lines written since the last call, parsed (a line still being written waits)."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except OSError:  # not written yet
            return []
        self._offset += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        steps = []
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and isinstance(event.get("step"), str):
                steps.append({"step": _one_line(event["step"]), "done": _count(event.get("done")),
                              "total": _count(event.get("total")), "unit": _one_line(event.get("unit") or "")})
        return steps


class CellCounter:
    """A write-only text stream for papermill's cell progress bar that keeps the cell counter it shows.

    papermill draws its bar with ``tqdm`` in the runner's process; given this stream as the bar's file
    and :data:`CELL_BAR_FORMAT`, each redraw is ``"<cells done>/<cells>"``, parsed here instead of shown.
    """

    #: The format papermill's bar is drawn with (see :meth:`papermill_progress_bar`).
    CELL_BAR_FORMAT = "{n}/{total}"
    _COUNTER = re.compile(r"(\d+)/(\d+)")

    def __init__(self) -> None:
        self.done: int | None = None
        self.total: int | None = None
        self.encoding = "utf-8"

    def write(self, text: str) -> int:
        found = self._COUNTER.findall(text)
        if found:
            done, total = found[-1]
            self.done, self.total = int(done), int(total)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def papermill_progress_bar(self) -> dict:
        """``execute_notebook(progress_bar=...)``: papermill's bar, drawn into this counter."""
        return {"file": self, "bar_format": self.CELL_BAR_FORMAT, "mininterval": 0, "miniters": 1,
                "leave": False, "position": 0, "dynamic_ncols": False, "ncols": 0}


def _braces(text: str) -> str:
    """Text to put inside a tqdm ``bar_format`` literally."""
    return text.replace("{", "{{").replace("}", "}}")


class LiveLine:
    """The live line of one stage on a terminal: a ``tqdm`` bar redrawn by :meth:`update`.

    ``[2/4] segmentation: CLV fit  45%|████▌     | 2,250/5,000 customers [00:42, cell 12/40]``, or without
    a total ``[1/4] ingest: reading orders.csv 120,000 rows [00:07, cell 9/31]``, or while a cell reports
    no step ``[3/4] roi [00:01, cell 2/35]``. The elapsed time is the stage's.
    """

    def __init__(self, prefix: str, stream: TextIO) -> None:
        from tqdm import tqdm

        self.prefix = prefix
        self.step: dict | None = None
        self.cells: tuple[int, int] | None = None
        # leave=False: closing erases the line, so the runner's one line per stage follows on a clean line
        self._bar = tqdm(total=None, file=stream, leave=False, dynamic_ncols=True, position=0,
                         mininterval=0, bar_format=self._format(), delay=0)

    def _format(self) -> str:
        head = _braces(self.prefix)
        counts = ""
        with_bar = False
        if self.step is not None:
            head += ": " + _braces(self.step["step"])
            done, total, unit = self.step["done"], self.step["total"], _braces(self.step["unit"])
            if total:
                with_bar = True
                counts = f"{done or 0:,}/{total:,} {unit}".rstrip()
            elif done is not None:
                counts = f"{done:,} {unit}".rstrip()
        cells = f", cell {self.cells[0]}/{self.cells[1]}" if self.cells else ""
        tail = f"[{{elapsed}}{cells}]"
        if with_bar:
            return f"{head} {{percentage:3.0f}}%|{{bar}}| {counts} {tail}"
        return f"{head} {counts} {tail}" if counts else f"{head} {tail}"

    def update(self, steps: list[dict] = (), cells: tuple[int, int] | None = None) -> None:
        """Take the steps reported since the last call and the cell counter, and redraw the line.

        ``cells`` is papermill's count: cells done and in all. The line shows the cell running (one more
        than done). A step ends with the cell that reported it: a later cell that reports nothing shows
        only the stage, its elapsed time and the cell, not a step that is over.
        """
        if steps:
            self.step = steps[-1]
        if cells is not None:
            cells = (min(cells[0] + 1, cells[1]), cells[1])
            if not steps and self.cells is not None and cells[0] != self.cells[0]:
                self.step = None
            self.cells = cells
        bar = self._bar
        total = self.step["total"] if self.step else None
        bar.total = total or None
        bar.n = min(self.step["done"] or 0, total) if self.step and total else 0
        bar.bar_format = self._format()
        bar.refresh()

    def close(self) -> None:
        self._bar.close()


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is an interactive terminal that can take a redrawn line (not ``TERM=dumb``)."""
    try:
        return bool(stream.isatty()) and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


class _StageDisplay:
    """What :func:`stage_display` yields: papermill's ``progress_bar`` argument and a :meth:`tick`."""

    def __init__(self, line: LiveLine | None, tail: StepTail | None, cells: CellCounter | None) -> None:
        self._line, self._tail, self._cells = line, tail, cells

    @property
    def papermill_progress_bar(self) -> bool | dict:
        return self._cells.papermill_progress_bar() if self._cells else False

    def tick(self) -> None:
        """Read new steps and redraw the live line (nothing when the display is off)."""
        if self._line is None:
            return
        cells = (self._cells.done, self._cells.total) if self._cells.total else None
        try:
            self._line.update(self._tail.poll(), cells)
        except (OSError, ValueError):  # the terminal went away: the run goes on without its live line
            self._line = None


@contextmanager
def stage_display(prefix: str, stream: TextIO, *, enabled: bool, steps_file: str | Path) -> Iterator[_StageDisplay]:
    """The live line of one stage while the block runs, when ``enabled`` (the runner: ``stream`` is a
    terminal); otherwise nothing is shown, :data:`ENV_VAR` stays unset and papermill draws no bar.

    Sets :data:`ENV_VAR` to ``steps_file`` for the block (a kernel started in it inherits it), and on the
    way out shows the last steps once more, erases the line and removes the file.
    """
    if not enabled:
        yield _StageDisplay(None, None, None)
        return
    steps_file = Path(steps_file)
    saved = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = str(steps_file)
    line = None
    try:
        line = LiveLine(prefix, stream)
        display = _StageDisplay(line, StepTail(steps_file), CellCounter())
        yield display
        display.tick()  # a stage shorter than a tick still shows what it reported
    finally:
        if line is not None:
            try:
                line.close()
            except (OSError, ValueError):  # the terminal went away
                pass
        if saved is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = saved
        steps_file.unlink(missing_ok=True)
