"""How a stage reports a step it could not compute, so the run degrades instead of dying.

A model step that cannot be computed on the data at hand (too few customers, repeat buyers, weeks,
arms or answers; no convergence; a singular matrix) raises :class:`CannotCompute` with a plain-words
reason. The stage function catches it with :func:`guard`, which records the reason in the run's
``warnings.jsonl`` and returns an :class:`Unavailable` that the notebook shows in place of the result.
The runner reads ``warnings.jsonl`` after each stage: a stage that finished with warnings is
``ok_with_warnings`` and its warnings are listed in the manifest and on the run page.

Bugs are not caught: only :class:`CannotCompute` degrades a step; any other exception fails the stage.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

from crmlib.i18n import N_, _

__all__ = [
    "recorded_reason",
    "show_notice",
    "CannotCompute",
    "Unavailable",
    "WARNINGS_FILE",
    "STATUSES",
    "STATUS_WORDS",
    "status_words",
    "guard",
    "record_warning",
    "read_warnings",
]

#: The run directory's warning log, one JSON object per line: {"stage", "step", "message", "time"}.
WARNINGS_FILE = "warnings.jsonl"
#: A stage's status in the manifest and on the run page.
STATUSES = ("ok", "ok_with_warnings", "failed", "skipped")
#: A status (stage or run) in words; the manifest keeps the code, pages show :func:`status_words`.
STATUS_WORDS = {"ok": N_("ok"), "ok_with_warnings": N_("ok with warnings"), "failed": N_("failed"),
                "skipped": N_("skipped"), "running": N_("running"), "pending": N_("pending")}

T = TypeVar("T")


class CannotCompute(ValueError):
    """The data at hand cannot answer this step; ``str(exc)`` says why in plain words.

    A ``ValueError`` so that callers that already catch bad-input errors keep working.
    """


@dataclass(frozen=True)
class Unavailable:
    """What a step returns when it could not be computed: its name and the plain-words reason."""

    step: str
    reason: str

    def __bool__(self) -> bool:  # `if result:` reads as "was it computed?"
        return False

    def __repr__(self) -> str:
        return f"{self.step}: not computed - {self.reason}"

    def _repr_markdown_(self) -> str:
        from crmlib.report import escape_markdown  # reasons can name channels or experiments: data

        # step names are English codes marked N_ where the stage names them; the reason was written in
        # the run's language when it was raised
        lead = _("{step}: not computed.").format(step=_(self.step))
        return f"**{escape_markdown(lead)}** {escape_markdown(self.reason)}"


def status_words(status: str, *, translate: bool = True) -> str:
    """A stage or run status in plain words (``ok with warnings``), in the report's language unless
    ``translate`` is False (the console and the scheduler's log stay English)."""
    words = STATUS_WORDS.get(str(status), str(status).replace("_", " "))
    return _(words) if translate else words


def _run_dir(where: Any) -> Path:
    """An Engine (its ``run_dir``), a RunContext (its ``run_dir``) or a path."""
    return Path(getattr(where, "run_dir", where))


def record_warning(where: Any, stage: str, step: str, message: str) -> None:
    """Append one warning to ``<run_dir>/warnings.jsonl`` (``where``: Engine, RunContext or path).

    One ``write`` of one line on a file opened for appending, so notebooks running at once on the
    same run directory do not interleave their lines.
    """
    line = json.dumps({"stage": stage, "step": step, "message": str(message),
                       "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")},
                      ensure_ascii=False) + "\n"
    path = _run_dir(where) / WARNINGS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def read_warnings(where: Any, stage: str | None = None) -> list[dict]:
    """The warnings recorded under ``where`` (optionally of one stage), each (stage, step, message) once,
    in the order first recorded."""
    path = _run_dir(where) / WARNINGS_FILE
    if not path.exists():
        return []
    seen, out = set(), []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            w = json.loads(line)
        except ValueError:  # a line cut short by a killed process
            continue
        key = (w.get("stage"), w.get("step"), w.get("message"))
        if key in seen or (stage is not None and w.get("stage") != stage):
            continue
        seen.add(key)
        out.append(w)
    return out


def recorded_reason(where: Any, stage: str, *steps: str) -> str | None:
    """The reason recorded for the first warning of ``stage`` whose step is one of ``steps``, else None:
    what a view shows in place of a table its step could not write."""
    return next((w["message"] for w in read_warnings(where, stage) if w.get("step") in steps), None)


def show_notice(notice: T) -> T:
    """Display ``notice`` (an :class:`Unavailable` or a Markdown line) and return it: a chart cell ends
    with ";", which hides a returned value, so a chart view that cannot draw shows its reason itself."""
    from IPython.display import display

    display(notice)
    return notice


def guard(where: Any, stage: str, step: str, compute: Callable[[], T]) -> T | Unavailable:
    """``compute()``, or - when it raises :class:`CannotCompute` - the warning recorded and an
    :class:`Unavailable` returned in its place. Any other exception propagates (it is a bug)."""
    try:
        return compute()
    except CannotCompute as exc:
        record_warning(where, stage, step, str(exc))
        return Unavailable(step, str(exc))
