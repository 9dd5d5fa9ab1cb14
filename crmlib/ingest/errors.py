"""The one exception class the ingest stage raises for bad input."""

from __future__ import annotations

__all__ = ["IngestError"]


class IngestError(ValueError):
    """Input the ingest stage cannot use.

    The message always names the source and file, and where it helps the row (1-based data row, as
    counted after the header; row 0 is the header row) and the column, and ends with how to fix the
    problem. The whole text, several lines, is meant to be printed.

    Attributes
    ----------
    source, path, row, column, hint : str | int | None
        The parts of the message, for programs that want them separately.
    setting : dict | None
        The source settings the fix names, when the problem is a setting that a sniff found the right
        value for (``{"encoding": "gb18030"}``, ``{"delimiter": ";"}``): ``crm validate`` applies it to look
        for the problems behind this one.
    """

    def __init__(self, problem: str, *, source: str | None = None, path: str | None = None,
                 row: int | None = None, column: str | None = None, hint: str | None = None,
                 setting: dict | None = None) -> None:
        self.source, self.path, self.row, self.column, self.hint = source, path, row, column, hint
        self.setting = setting
        where = []
        if source:
            where.append(f"source {source!r}")
        if path:
            where.append(f"file {path}")
        if row == 0:
            where.append("header row")
        elif row is not None:
            where.append(f"row {row}")
        if column:
            where.append(f"column {column!r}")
        msg = f"{', '.join(where)}: {problem}" if where else problem
        if hint:
            msg += f"\n  How to fix: {hint}"
        super().__init__(msg)
