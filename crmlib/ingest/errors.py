"""The one exception class the ingest stage raises for bad input."""

from __future__ import annotations

__all__ = ["IngestError"]


class IngestError(ValueError):
    """Input the ingest stage cannot use.

    The message always names the source and file, and where it helps the row (1-based data row, as
    counted after the header) and the column, and ends with how to fix the problem.

    Attributes
    ----------
    source, path, row, column, hint : str | int | None
        The parts of the message, for programs that want them separately.
    """

    def __init__(self, problem: str, *, source: str | None = None, path: str | None = None,
                 row: int | None = None, column: str | None = None, hint: str | None = None) -> None:
        self.source, self.path, self.row, self.column, self.hint = source, path, row, column, hint
        where = []
        if source:
            where.append(f"source {source!r}")
        if path:
            where.append(f"file {path}")
        if row is not None:
            where.append(f"row {row}")
        if column:
            where.append(f"column {column!r}")
        msg = f"{', '.join(where)}: {problem}" if where else problem
        if hint:
            msg += f"\n  How to fix: {hint}"
        super().__init__(msg)
