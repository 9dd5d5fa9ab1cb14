"""Read one source file into the engine as text columns with file row numbers.

Every format becomes the same thing, on either engine: a relation named ``raw_<source>`` with
``_row_number`` (1-based data row: row 1 is the first row after the header) and every file column as
text, renamed to its canonical name when the params' ``columns`` mapping (or the header itself, up
to case, spaces and full-width forms) says so. Unmapped columns are kept under their own name as
*extras*. Nothing is typed yet, so nothing is lost to type inference; :mod:`crmlib.ingest.validate`
parses the text.

Before anything is read, the file itself is checked: it exists, is readable, is not empty, and its
first bytes agree with its ``format`` (Parquet starts with ``PAR1``, xlsx is a zip holding ``xl/``, gzip
starts with ``1f 8b``). When the declared encoding or delimiter does not fit the first MiB, the error
says which one does (:func:`suggest_encoding`, :func:`sniff_delimiter`).

CSV/TSV files are scanned by DuckDB. DuckDB 1.5 reads only UTF-8, UTF-16 and Latin-1 without the
``encodings`` extension (not installable offline), so any other encoding (GBK, GB18030, Big5, ...), a
UTF-16 file, a gzip-compressed file and a file that mixes CRLF and LF line endings (which DuckDB
refuses, or with ``new_line`` set reads as nothing) are first streamed, 4 MiB at a time, into a UTF-8
copy with LF line endings in the engine's private scratch directory (``Engine.scratch_dir``, outside
the reports folder: the copy holds raw PII). :meth:`RawSource.discard_copy` removes it once the rows
are stored.

On Spark (``engine.kind == "spark"``) the same checks run and the same copies are made (Spark 4 reads no
GBK or GB18030), then :mod:`crmlib.ingest._read_spark` reads the file eagerly into a scratch relation
that has ``_row_number`` already, and lists the rejected lines at once (:attr:`RawSource.rejected`).
The stage stores the validated rows of either with :func:`store_numbered`.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import gzip
import io
import json
import tempfile
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import ibis
import pandas as pd

from crmlib.engine import Engine
from crmlib.ingest import _read_spark
from crmlib.ingest import _sql_duckdb as _sql
from crmlib.ingest.errors import IngestError
from crmlib.params import CANONICAL_COLUMNS, KINDS, REQUIRED_COLUMNS, effective_delimiter

__all__ = ["RawSource", "read_source", "rejected_rows", "store_numbered", "transcode_to_utf8", "suggest_encoding",
           "sniff_file_type", "sniff_delimiter", "ENCODING_CANDIDATES", "DELIMITER_CANDIDATES"]

ENCODING_CANDIDATES = ("utf-8", "gb18030", "gbk", "big5", "shift_jis", "utf-16", "latin-1")
DELIMITER_CANDIDATES = (",", ";", "\t", "|")
_UTF8 = {"utf-8", "utf8", "utf-8-sig", "ascii", "us-ascii"}
_CHUNK = 4 << 20
_HEAD = 1 << 20
# encodings in which the bytes 0x0a and 0x0d only ever mean LF and CR (so line endings can be counted on
# the bytes); UTF-16/32 are not among them
_BYTE_NEWLINES = {codecs.lookup(e).name for e in ("utf-8", "gb18030", "gbk", "big5", "shift_jis", "latin-1",
                                                   "ascii", "cp1252", "euc-kr", "euc-jp", "gb2312")}
_FIX_EMPTY = "export the data again, or remove this source from the params file"


@dataclass
class RawSource:
    """One source read into the engine, untyped.

    Attributes
    ----------
    name, kind, path, format : str
        From the params.
    table : ibis.Table
        ``_row_number`` plus one string column per file column (canonical names where mapped).
    canonical : list[str]
        Canonical columns present in the file.
    extras : list[str]
        File columns kept under their own names.
    file_columns : list[str]
        The header as it is in the file.
    rejects_table : str | None
        For CSV on DuckDB: the table of lines with the wrong field count, filled when ``table`` is scanned.
    rejected : list[tuple[int, str, str]] | None
        For CSV on Spark: the lines with the wrong field count, found when the file was read (the
        ``(row number, reason, line)`` triples :func:`rejected_rows` returns).
    read_path : str | None
        The UTF-8 file DuckDB scans: the source itself, or a transcoded copy in the scratch directory.
    warnings : list[str]
        Things the operator should know although the file was read (a BOM that overrode the declared
        encoding, title rows skipped above an Excel header, a file with no data rows).
    """

    name: str
    kind: str
    path: str
    format: str
    table: ibis.Table
    canonical: list[str]
    extras: list[str]
    file_columns: list[str]
    source: dict = field(repr=False, default_factory=dict)
    rejects_table: str | None = None
    rejected: list[tuple[int, str, str]] | None = None
    read_path: str | None = None
    warnings: list[str] = field(default_factory=list)
    # "column": ``table`` has ``_row_number``; "rowid": it has none, and the first table materialized from
    # one scan of it numbers the rows (``_sql.create_numbered_table``)
    row_numbers: str = "column"
    copy: str | None = None  # the transcoded copy (raw PII) to remove once the rows are stored

    def numbered(self) -> ibis.Table:
        """``table`` with ``_row_number`` first (for CSV/JSON lines: ``row_number() OVER ()`` in scan
        order - one thread; the stage numbers big files by storing them instead)."""
        if "_row_number" in self.table.columns:
            return self.table
        return self.table.mutate(_row_number=(ibis.row_number() + 1).cast("int64")).relocate("_row_number")

    def discard_copy(self) -> None:
        """Remove the transcoded copy of the file, if any (call it once the rows are stored: it holds raw
        names and phones). ``table`` cannot be scanned afterwards."""
        if self.copy:
            Path(self.copy).unlink(missing_ok=True)
            self.copy = None


# -- the file itself ----------------------------------------------------------------------------------
def sniff_file_type(head: bytes, path: str | Path | None = None) -> str:
    """What the first bytes of a file say it is.

    Returns
    -------
    str
        ``"parquet"``, ``"xlsx"`` (a zip holding ``xl/``), ``"zip"`` (any other zip), ``"gzip"``,
        ``"xls"`` (an old OLE2 Excel/Office file), ``"binary"`` (NUL bytes that are not UTF-16 text) or
        ``"text"``.
    """
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        if path is not None:
            try:
                with zipfile.ZipFile(path) as zf:
                    if any(n.startswith("xl/") for n in zf.namelist()):
                        return "xlsx"
            except (zipfile.BadZipFile, OSError):
                pass
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "xls"
    if b"\x00" in head[:4096] and _utf16_without_bom(head) is None and not _has_utf16_bom(head):
        return "binary"
    return "text"


def _has_utf16_bom(head: bytes) -> bool:
    return head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))


def _utf16_without_bom(head: bytes) -> str | None:
    """``"utf-16-le"``/``"utf-16-be"`` when the NUL bytes sit where ASCII text in UTF-16 puts them."""
    sample = head[:4096]
    if len(sample) < 8 or _has_utf16_bom(sample):
        return None
    even, odd = sample[0::2], sample[1::2]
    if odd.count(0) > 0.6 * len(odd) and even.count(0) < 0.1 * len(even):
        return "utf-16-le"
    if even.count(0) > 0.6 * len(even) and odd.count(0) < 0.1 * len(odd):
        return "utf-16-be"
    return None


def _check_file(path: Path, *, source: str) -> None:
    """Raise a helpful IngestError when ``path`` is missing, a folder, unreadable or empty."""
    if not path.exists():
        raise IngestError("file not found", source=source, path=str(path),
                          hint="check the path in the params file (relative paths resolve against the "
                               "params file's folder)")
    if path.is_dir():
        raise IngestError("the path is a folder, not a file", source=source, path=str(path),
                          hint="point `path:` at the exported file inside the folder")
    size = path.stat().st_size
    with _open_bytes(path, source=source) as fh:
        fh.read(1)
    if size == 0:
        raise IngestError("the file is empty (0 bytes): not even a header line", source=source, path=str(path),
                          hint=_FIX_EMPTY)


def _open_bytes(path: Path, *, source: str) -> IO[bytes]:
    """``open(path, "rb")`` with the operating system's refusal turned into an IngestError."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise IngestError("file not found (it was there when the run started, and is gone now)", source=source,
                          path=str(path), hint="check that no other job moves or deletes the export while the "
                                               "run reads it, then run again") from None
    except PermissionError:
        raise IngestError("permission denied: the file cannot be read by the user running crm", source=source,
                          path=str(path), hint="give that user read permission on the file (e.g. `chmod a+r`) "
                                               "or copy the export somewhere it can read") from None
    except IsADirectoryError:
        raise IngestError("the path is a folder, not a file", source=source, path=str(path),
                          hint="point `path:` at the exported file inside the folder") from None
    except OSError as exc:
        raise IngestError(f"the file cannot be opened: {exc.strerror or exc}", source=source, path=str(path),
                          hint="check the disk and the path, then run again") from None


def _read_head(path: Path, *, source: str, n: int = _HEAD) -> bytes:
    with _open_bytes(path, source=source) as fh:
        try:
            return fh.read(n)
        except OSError as exc:
            raise IngestError(f"the file cannot be read: {exc.strerror or exc}", source=source, path=str(path),
                              hint="check the disk and the file, then run again") from None


_FORMAT_NAMES = {"parquet": "a Parquet file", "xlsx": "an Excel workbook (xlsx)", "zip": "a zip archive",
                 "gzip": "a gzip-compressed file", "xls": "an old Excel file (.xls)", "binary": "binary data, not text",
                 "text": "a text file"}


def _check_type(fmt: str, actual: str, path: Path, *, source: str) -> None:
    """Raise when the file's first bytes contradict its format (gzip CSV is read: it is decompressed)."""
    text_formats = ("csv", "tsv", "jsonl")
    ok = ((fmt in text_formats and actual == "text") or (fmt in ("csv", "tsv") and actual == "gzip")
          or fmt == actual)
    if ok:
        return
    what = f"the file is {_FORMAT_NAMES[actual]}, not {fmt}"
    if actual in ("parquet", "xlsx") or (actual == "text" and fmt in ("parquet", "xlsx")):
        target = actual if actual != "text" else "csv"
        raise IngestError(f"{what} (judged by its first bytes, not its name)", source=source, path=str(path),
                          setting={"format": target} if actual != "text" else None,
                          hint=f"set `format: {target}` for this source"
                               + (" (or `format: tsv` / `jsonl`, whichever the text is)" if actual == "text" else ""))
    if actual == "zip":
        try:
            with zipfile.ZipFile(path) as zf:
                inside = [n for n in zf.namelist() if not n.endswith("/")]
        except (zipfile.BadZipFile, OSError):
            inside = []
        listing = f" holding {', '.join(inside[:5])}{', ...' if len(inside) > 5 else ''}" if inside else ""
        raise IngestError(f"{what}: a zip archive{listing}", source=source, path=str(path),
                          hint="unzip it first and point `path:` at the file inside")
    if actual == "gzip":
        raise IngestError(what, source=source, path=str(path),
                          hint="decompress it first (`gunzip`) and point `path:` at the result")
    if actual == "xls":
        raise IngestError(what, source=source, path=str(path),
                          hint="open it in Excel and save it as .xlsx (or CSV), then point `path:` at that file")
    raise IngestError(f"{what}: it holds NUL bytes, so no text encoding fits", source=source, path=str(path),
                      hint="check that `path:` points at the export itself, and `format:` says what it is")


# -- read --------------------------------------------------------------------------------------------
def read_source(engine: Engine, source: dict, *, scratch_dir: str | Path | None = None,
                sample_rows: int | None = None) -> RawSource:
    """Read ``source`` (one entry of ``params["sources"]``) into ``engine`` as text columns.

    Parameters
    ----------
    engine : Engine
        The run's engine.
    source : dict
        One validated ``sources[]`` entry, every key present (:func:`crmlib.params.load_params`, or
        :func:`crmlib.params.complete_source` outside a run): ``name``, ``kind``, ``path``, ``format``,
        ``encoding``, ``columns``, ``sheet``, ``delimiter``, ``header_row`` (xlsx: the 1-based sheet row
        holding the header; null: the first row that holds the mapped and required columns)...
    scratch_dir : path, optional
        Where transcoded copies go; default ``engine.scratch_dir`` (private, outside the reports folder).
    sample_rows : int, optional
        Read only the first ``sample_rows`` data rows (:func:`crmlib.ingest.preflight.check_sources`).

    Raises
    ------
    IngestError
        Missing, unreadable or empty file; a file whose content is another format; unknown kind or
        format; undecodable text (with the encoding that works); a wrong delimiter (with the one that
        works); a required column that is neither in the file nor mapped (the message lists the file's
        columns and suggests a mapping); an ambiguous Excel sheet or header.
    """
    name, kind, path = source["name"], source["kind"], Path(source["path"])
    fmt = (source["format"] or "").lower()  # validated params tell it from the extension when not set
    if kind not in KINDS:
        raise IngestError(f"unknown kind {kind!r}", source=name, path=str(path),
                          hint=f"set kind to one of: {', '.join(KINDS)}")
    _check_file(path, source=name)
    if fmt not in ("csv", "tsv", "parquet", "jsonl", "xlsx"):
        raise IngestError(f"unknown format {fmt!r}", source=name, path=str(path),
                          hint="set `format:` to one of csv, tsv, parquet, jsonl, xlsx")
    head = _read_head(path, source=name)
    _check_type(fmt, sniff_file_type(head, path), path, source=name)
    scratch = Path(scratch_dir) if scratch_dir else _scratch(engine)
    if fmt in ("csv", "tsv"):
        return _read_csv(engine, source, fmt, path, head, scratch, sample_rows)
    if fmt == "xlsx":
        return _read_xlsx(engine, source, path, sample_rows)
    if fmt == "jsonl":
        return _read_jsonl(engine, source, path, head, scratch, sample_rows)
    return _read_parquet(engine, source, path, sample_rows)


def _scratch(engine: Engine) -> Path:
    """The engine's private scratch directory (a fresh private temp dir for an engine without one)."""
    found = getattr(engine, "scratch_dir", None)
    if found is None:
        found = Path(tempfile.mkdtemp(prefix="crmlib-ingest-"))
        engine.scratch_dir = found
    return Path(found)


def _read_csv(engine: Engine, source: dict, fmt: str, path: Path, head: bytes, scratch: Path,
              sample_rows: int | None) -> RawSource:
    name, kind = source["name"], source["kind"]
    declared = source["encoding"].lower()
    delimiter = effective_delimiter(source)
    warns: list[str] = []
    gzipped = head.startswith(b"\x1f\x8b")
    if gzipped:  # the text is inside: judge encoding and delimiter on the decompressed bytes
        try:
            with gzip.open(path, "rb") as fh:
                head = fh.read(_HEAD)
        except (OSError, EOFError) as exc:
            raise IngestError(f"the gzip-compressed file cannot be decompressed: {exc}", source=name,
                              path=str(path), hint="export the data again, or decompress it yourself and check "
                                                   "the result") from None
    encoding = _effective_encoding(head, declared, path, source=name, warns=warns)
    text = _decode_head(head, encoding, path, source=name, delimiter=delimiter)
    if not text.strip():
        raise IngestError("the file holds only blank lines: not even a header line", source=name, path=str(path),
                          row=0, hint=_FIX_EMPTY)
    _check_delimiter(text, delimiter, path, source=name, cut=len(head) == _HEAD)

    utf8 = codecs.lookup(encoding).name in {codecs.lookup(e).name for e in _UTF8}
    # a sample copy is always made, with LF line ends: no need to read the whole file to find mixed ones
    mixed = sample_rows is not None or _mixed_line_endings(path, encoding, gzipped=gzipped, source=name)
    copy = None
    read_path = path
    if not utf8 or gzipped or mixed or sample_rows is not None:
        scratch.mkdir(parents=True, exist_ok=True)
        copy = scratch / f"{name}.utf8.csv"
        read_path = transcode_to_utf8(path, encoding, copy, source=name, delimiter=delimiter,
                                      normalize_newlines=mixed or (not utf8 and codecs.lookup(encoding).name
                                                                   not in _BYTE_NEWLINES),
                                      max_rows=sample_rows, gzipped=gzipped)
        if not utf8 and not head.isascii() and suggest_encoding(head) == "utf-8":
            warns.append(f"source {name!r}, file {path}: declared `encoding: {declared}` but the text also "
                         "decodes as UTF-8 - if names look garbled, set `encoding: utf-8`")
    try:
        header = _read_header(Path(read_path), delimiter, source=name, original=path, encoding=encoding)
        targets = _map_columns(header, source, kind)
        rejects = f"rejects_{name}"
        unique = _unique(header)
        if not _has_data_lines(Path(read_path)):
            warns.append(_no_rows_warning(name, path))
        if engine.kind == "spark":
            table, rejected, replaced = _read_spark.read_csv(engine, f"raw_{name}", str(read_path), header=unique,
                                                             columns=list(zip(unique, targets)), delimiter=delimiter)
            if replaced and copy is None:  # Spark decodes bytes that are not UTF-8 as U+FFFD, silently
                _check_decodes(path, encoding, scratch, source=name, delimiter=delimiter)
        else:
            table = _sql.create_csv_view(engine, f"raw_{name}", str(read_path), header=unique,
                                         columns=list(zip(unique, targets)), delimiter=delimiter,
                                         rejects_table=rejects)
    except BaseException:
        if copy is not None:
            copy.unlink(missing_ok=True)
        raise
    if engine.kind == "spark":
        return _raw(source, fmt, table, header, targets, rejected=rejected, read_path=str(read_path),
                    warnings=warns, copy=str(copy) if copy is not None else None)
    return _raw(source, fmt, table, header, targets, rejects_table=rejects,
                read_path=str(read_path), warnings=warns, row_numbers="rowid",
                copy=str(copy) if copy is not None else None)


def _check_decodes(path: Path, encoding: str, scratch: Path, *, source: str, delimiter: str) -> None:
    """Raise the IngestError of the first byte of ``path`` that is not ``encoding`` (naming its line, row,
    column and an encoding that fits); nothing when every byte decodes (the text holds U+FFFD itself)."""
    scratch.mkdir(parents=True, exist_ok=True)
    check = scratch / f"{source}.decode-check.csv"
    try:
        transcode_to_utf8(path, encoding, check, source=source, delimiter=delimiter)
    finally:
        check.unlink(missing_ok=True)


def _no_rows_warning(name: str, path: Path) -> str:
    return (f"source {name!r}, file {path}: the file has a header but no data rows - nothing loaded from it "
            "(if rows were expected, export the data again)")


def _effective_encoding(head: bytes, declared: str, path: Path, *, source: str, warns: list[str]) -> str:
    """The encoding to read with: a byte-order mark wins over the declared encoding (it cannot be wrong);
    UTF-16 without a BOM is refused with the exact setting."""
    name = codecs.lookup(declared).name
    if _has_utf16_bom(head):
        if not name.startswith("utf-16"):
            warns.append(f"source {source!r}, file {path}: the file is UTF-16 (it starts with a byte-order mark), "
                         f"not {declared}: read as UTF-16 - set `encoding: utf-16` for this source")
        return "utf-16"
    if head.startswith(codecs.BOM_UTF8):
        if name not in {codecs.lookup(e).name for e in _UTF8}:
            warns.append(f"source {source!r}, file {path}: the file is UTF-8 (it starts with a UTF-8 byte-order "
                         f"mark), not {declared}: read as UTF-8 - set `encoding: utf-8-sig` for this source")
        return "utf-8-sig"
    guess = _utf16_without_bom(head)
    if guess and not name.startswith("utf-16"):
        raise IngestError(f"the text is {guess.upper()} without a byte-order mark (every other byte is 0), "
                          f"not {declared}", source=source, path=str(path), setting={"encoding": guess},
                          hint=f"set `encoding: {guess}` for this source")
    return declared


def _decode_head(head: bytes, encoding: str, path: Path, *, source: str, delimiter: str) -> str:
    """The first MiB as text; an IngestError naming line, row, column and a working encoding if it is
    not ``encoding`` (a character cut at the MiB boundary is not an error)."""
    try:
        return head.decode(encoding)
    except UnicodeDecodeError as exc:
        cut = len(head) == _HEAD and exc.start >= len(head) - 4
        if cut:
            return head[: exc.start].decode(encoding, errors="replace")
        line = head.count(b"\n", 0, exc.start) + 1
        header = None
        if line > 1:
            first = head.split(b"\n", 1)[0].decode(encoding, errors="replace").lstrip("\ufeff")
            header = next(csv.reader(io.StringIO(first), delimiter=delimiter), None)
        raise _decode_error(path, encoding, head, exc.start, source=source, row=line - 1 if line > 1 else None,
                            line=line, delimiter=delimiter, header=header) from None


def _check_delimiter(text: str, delimiter: str, path: Path, *, source: str, cut: bool) -> None:
    """Refuse a delimiter the first lines contradict, naming the one that fits them."""
    lines = _sample_lines(text, cut)
    if not lines:
        return
    sniffed = sniff_delimiter(text, cut=cut)
    if sniffed is None or sniffed == delimiter:
        return
    declared_fields = [len(_split(line, delimiter)) for line in lines]
    consistent = sum(n == declared_fields[0] for n in declared_fields) / len(declared_fields)
    if declared_fields[0] >= 2 and consistent >= 0.5:
        return  # the declared delimiter splits the lines well enough: its rejects are counted row by row
    fields = len(_split(lines[0], sniffed))
    raise IngestError(
        f"with delimiter {delimiter!r} the header is {declared_fields[0]} column(s) "
        f"({lines[0][:80]!r}), but {sniffed!r} splits the header and the first lines into {fields} columns: "
        f"the file is delimited by {sniffed!r}",
        source=source, path=str(path), row=0, hint=f"set `delimiter: {json.dumps(sniffed)}` for this source",
        setting={"delimiter": sniffed})


def _sample_lines(text: str, cut: bool, n: int = 50) -> list[str]:
    lines = text.split("\n")
    if cut or (lines and lines[-1] and not text.endswith("\n")):
        lines = lines[:-1] if len(lines) > 1 else lines
    return [line.rstrip("\r").lstrip("\ufeff") for line in lines[:n] if line.strip()]


def _split(line: str, delimiter: str) -> list[str]:
    return next(csv.reader([line], delimiter=delimiter), [])


def sniff_delimiter(text: str, *, cut: bool = False) -> str | None:
    """The candidate delimiter that splits the first lines of ``text`` into the same number (>= 2) of
    fields most consistently (ties: more fields); ``None`` when none does."""
    lines = _sample_lines(text, cut)
    if not lines:
        return None
    best, best_key = None, (0.0, 0)
    for d in DELIMITER_CANDIDATES:
        counts = [len(_split(line, d)) for line in lines]
        if counts[0] < 2:
            continue
        share = sum(n == counts[0] for n in counts) / len(counts)
        if share >= 0.8 and (share, counts[0]) > best_key:
            best, best_key = d, (share, counts[0])
    return best


def _mixed_line_endings(path: Path, encoding: str, *, gzipped: bool, source: str) -> bool:
    """Whether the file has both CRLF and bare LF line ends (one pass over the bytes, 4 MiB at a time;
    for UTF-16 the copy normalizes line ends anyway)."""
    if codecs.lookup(encoding).name not in _BYTE_NEWLINES and not codecs.lookup(encoding).name.startswith("utf-8"):
        return False
    crlf = bare_lf = False
    previous = b""
    opener = gzip.open if gzipped else open
    try:
        with opener(path, "rb") as fh:
            while True:
                chunk = fh.read(_CHUNK)
                if not chunk:
                    break
                if b"\r" not in chunk:  # the common case, one memchr: LF line ends only
                    bare_lf = bare_lf or (b"\n" in chunk[1:] or (chunk[:1] == b"\n" and previous != b"\r"))
                else:
                    pairs = chunk.count(b"\r\n") + (previous == b"\r" and chunk[:1] == b"\n")
                    crlf = crlf or pairs > 0
                    bare_lf = bare_lf or chunk.count(b"\n") > pairs
                if crlf and bare_lf:
                    return True
                previous = chunk[-1:]
    except OSError as exc:
        raise IngestError(f"the file cannot be read: {exc.strerror or exc}", source=source, path=str(path),
                          hint="check the disk and the file, then run again") from None
    return False


def _read_parquet(engine: Engine, source: dict, path: Path, sample_rows: int | None) -> RawSource:
    name = source["name"]
    spark = engine.kind == "spark"
    try:
        header = (_read_spark.parquet_columns(engine, str(path)) if spark
                  else _sql.parquet_columns(engine, str(path)))
    except Exception as exc:  # a truncated or corrupt file: the engine's words, one line
        raise IngestError(f"the Parquet file cannot be read: {str(exc).splitlines()[0]}", source=name,
                          path=str(path), hint="export the data again (the file may be truncated)") from None
    targets = _map_columns(header, source, source["kind"])
    if spark:
        table = _read_spark.read_parquet(engine, f"raw_{name}", str(path), columns=list(zip(header, targets)))
    else:
        table = _sql.create_parquet_view(engine, f"raw_{name}", str(path), columns=list(zip(header, targets)))
    if sample_rows is not None:
        table = table.filter(table._row_number <= sample_rows)
    warns = [] if table.limit(1).count().execute() else [_no_rows_warning(name, path)]
    return _raw(source, "parquet", table, header, targets, warnings=warns)


def _read_jsonl(engine: Engine, source: dict, path: Path, head: bytes, scratch: Path,
                sample_rows: int | None) -> RawSource:
    name = source["name"]
    read_path, copy = path, None
    if sample_rows is not None:
        scratch.mkdir(parents=True, exist_ok=True)
        copy = scratch / f"{name}.sample.jsonl"
        with _open_bytes(path, source=name) as src, open(copy, "wb") as dst:
            for i, line in enumerate(src):
                if i >= sample_rows:
                    break
                dst.write(line)
        read_path = copy
    spark = engine.kind == "spark"
    try:
        if spark:
            header = _read_spark.jsonl_columns(read_path, source=name)
        else:
            try:
                header = _sql.jsonl_columns(engine, str(read_path))
            except Exception as exc:  # DuckDB names the line; keep its words
                raise IngestError(f"not valid JSON lines: {str(exc).splitlines()[0]}", source=name,
                                  path=str(path), hint="each line must be one JSON object") from None
        targets = _map_columns(header, source, source["kind"])
        if spark:
            table = _read_spark.read_jsonl(engine, f"raw_{name}", str(read_path), columns=list(zip(header, targets)),
                                           source=name)
        else:
            table = _sql.create_jsonl_view(engine, f"raw_{name}", str(read_path),
                                           columns=list(zip(header, targets)))
        warns = [] if table.limit(1).count().execute() else [_no_rows_warning(name, path)]
    except BaseException:
        if copy is not None:
            copy.unlink(missing_ok=True)
        raise
    return _raw(source, "jsonl", table, header, targets, row_numbers="column" if spark else "rowid", warnings=warns,
                copy=str(copy) if copy is not None else None)


# -- Excel ---------------------------------------------------------------------------------------------
def _read_xlsx(engine: Engine, source: dict, path: Path, sample_rows: int | None) -> RawSource:
    import openpyxl  # only when a workbook is read

    name, kind = source["name"], source["kind"]
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # a damaged workbook: openpyxl's words
        raise IngestError(f"the Excel workbook cannot be opened: {exc}", source=name, path=str(path),
                          hint="open it in Excel, save it again as .xlsx, and run again") from None
    try:
        sheet = _pick_sheet(book, source["sheet"], path, source=name)
        sheet.reset_dimensions()  # some exporters write a wrong size: read every row there is
        rows: list[tuple[int, tuple]] = []
        header_row = source["header_row"]
        for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            rows.append((number, values))
            if sample_rows is not None and header_row is None and len(rows) > sample_rows + 50:
                break
            if sample_rows is not None and header_row is not None and number > int(header_row) + sample_rows:
                break
    finally:
        book.close()
    label = f"sheet {sheet.title!r}"
    rows = [(n, tuple(_cell_text(v) for v in values)) for n, values in rows]
    if not any(any(v is not None for v in values) for _n, values in rows):
        raise IngestError(f"{label} is empty: not even a header row", source=name, path=str(path),
                          hint="check `sheet:`, or export the data again")
    found = _find_header_row(rows, source, kind)
    warns = []
    if header_row is not None:
        at = int(header_row)
        if not any(n == at for n, _ in rows):
            raise IngestError(f"`header_row: {at}` is beyond the last row of {label}", source=name,
                              path=str(path), hint="set `header_row:` to the sheet row (1-based) holding the header")
    elif found is not None:
        at = found
    else:
        at = next(n for n, values in rows if any(v is not None for v in values))
    header_cells = next(values for n, values in rows if n == at)
    body = [(n, values) for n, values in rows if n > at and any(v is not None for v in values)]
    if header_row is None and at > 1 and any(any(v is not None for v in vs) for n, vs in rows if n < at):
        warns.append(f"source {name!r}, file {path}: {label}: the header is on row {at}; the "
                     f"{at - 1} row(s) above it (a title) are skipped")
    width = max([len(header_cells)] + [len(v) for _n, v in body])
    header_cells = tuple(header_cells) + (None,) * (width - len(header_cells))
    keep = []
    for i, h in enumerate(header_cells):
        has_data = any(i < len(v) and v[i] is not None for _n, v in body)
        if h is None or not str(h).strip():
            if has_data:
                letter = openpyxl.utils.get_column_letter(i + 1)
                raise IngestError(
                    f"{label}, header row {at}: column {letter} (position {i + 1}) has data but no header name "
                    "- merged header cells leave every column but the first of the merge without a name",
                    source=name, path=str(path), row=0, column=f"{letter} (position {i + 1})",
                    hint="unmerge the header cells in Excel and give each column its own name, then export again")
            continue  # an empty, unnamed column: nothing to read
        keep.append(i)
    header = [str(header_cells[i]) for i in keep]
    where = f"{label} row {at}"
    if header_row is None and found is None:
        where += (" (the first non-empty row: no row among the first 30 holds every mapped and required "
                  "column, so this one was taken as the header)")
    targets = _map_columns(header, source, kind, found_in=where)
    if sample_rows is not None:
        body = body[:sample_rows]
    frame = pd.DataFrame([[values[i] if i < len(values) else None for i in keep] for _n, values in body],
                         columns=targets, dtype=object)
    frame.insert(0, "_row_number", pd.Series([n - at for n, _v in body], dtype="int64"))
    if not body:
        warns.append(_no_rows_warning(name, path))
    schema = {"_row_number": "int64", **{t: "string" for t in targets}}
    table = engine.scratch(f"raw_{name}", ibis.memtable(frame, schema=schema))
    return _raw(source, "xlsx", table, header, targets, warnings=warns)


def _pick_sheet(book: Any, sheet: str | int | None, path: Path, *, source: str) -> Any:
    names = book.sheetnames
    listing = ", ".join(repr(n) for n in names)
    if sheet is None:
        if len(names) == 1:
            return book[names[0]]
        raise IngestError(f"the workbook has {len(names)} sheets ({listing}) and the params do not say which "
                          "one to read", source=source, path=str(path),
                          hint=f"set `sheet: {json.dumps(names[0], ensure_ascii=False)}` (or another sheet's name) "
                               "for this source; list each sheet as its own source to read several")
    if isinstance(sheet, int) and not isinstance(sheet, bool):
        if 0 <= sheet < len(names):
            return book[names[sheet]]
        raise IngestError(f"`sheet: {sheet}` is out of range: the workbook has {len(names)} sheet(s) ({listing})",
                          source=source, path=str(path),
                          hint="set `sheet:` to a sheet's name or its 0-based index")
    if sheet in names:
        return book[sheet]
    close = difflib.get_close_matches(str(sheet), names, n=1, cutoff=0.5)
    raise IngestError(f"the workbook has no sheet {sheet!r}; its sheets are {listing}", source=source,
                      path=str(path), hint=f"set `sheet: {json.dumps(close[0] if close else names[0], ensure_ascii=False)}`"
                                           " (sheet names are matched exactly)")


def _cell_text(value: Any) -> str | None:
    """A cell as the text a person sees: dates as ISO (``2026-01-05``, with the time when it is not
    midnight), whole floats without ``.0``; empty strings are empty cells."""
    import datetime as dt

    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time(0) else value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    text = str(value)
    return text if text.strip() else None


def _find_header_row(rows: list[tuple[int, tuple]], source: dict, kind: str, scan: int = 30) -> int | None:
    """The first of the first ``scan`` non-empty rows that holds every mapped column and every required
    column (by name or mapping); ``None`` when none does."""
    explicit = {_match_key(k): v for k, v in source["columns"].items()}
    required = [c for c in REQUIRED_COLUMNS[kind] if c not in explicit.values()]
    seen = 0
    for number, values in rows:
        if not any(v is not None for v in values):
            continue
        seen += 1
        if seen > scan:
            break
        cells = {_match_key(v) for v in values if v is not None}
        if set(explicit) <= cells and all(_normal(c) in {_normal(x) for x in cells} for c in required):
            return number
    return None


# -- headers and column mapping -------------------------------------------------------------------------
def _has_data_lines(path: Path) -> bool:
    """Whether anything but blank lines follows the header line (read without scanning the file)."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
        rest = fh.read(1)
    body = head.split(b"\n", 1)[1] if b"\n" in head else b""
    return bool(body.strip()) or bool(rest)


def _raw(source: dict, fmt: str, table: ibis.Table, header: list[str], targets: list[str], **kw) -> RawSource:
    canon = set(CANONICAL_COLUMNS[source["kind"]])
    return RawSource(
        name=source["name"], kind=source["kind"], path=str(source["path"]), format=fmt, table=table,
        canonical=[t for t in targets if t in canon], extras=[t for t in targets if t not in canon],
        file_columns=header, source=source, **kw)


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = n.lower()
        seen[k] = seen.get(k, 0) + 1
        out.append(n if seen[k] == 1 else f"{n}_{seen[k]}")
    return out


def _match_key(name: Any) -> str:
    """A header or mapping key as compared: full-width forms folded (NFKC), outer spaces and a BOM gone."""
    return unicodedata.normalize("NFKC", str(name)).strip().lstrip("\ufeff").strip()


def _normal(name: str) -> str:
    return _match_key(name).lower().replace(" ", "_").replace("-", "_")


def _map_columns(header: list[str], source: dict, kind: str, *, found_in: str = "the header") -> list[str]:
    """The view column for each file column, by position: the params mapping, then same-name canonical
    columns (up to case, spaces and full-width forms), else the file's own (stripped) name."""
    canonical = CANONICAL_COLUMNS[kind]
    explicit = {_match_key(k): v for k, v in source["columns"].items()}
    keys = [_match_key(h) for h in header]
    shown = ", ".join(h.strip().lstrip("\ufeff") for h in header)
    unknown = [k for k in explicit if k not in keys]
    if unknown:
        close = {k: _closest(k, keys) for k in unknown}
        nearest = "; ".join(f"closest to {k!r}: {c!r}" for k, c in close.items() if c)
        raise IngestError(
            f"the columns mapping names {', '.join(map(repr, unknown))}, which the file does not have "
            f"(the columns found in {found_in}: {shown})" + (f"; {nearest}" if nearest else ""),
            source=source["name"], path=str(source["path"]), column=unknown[0],
            hint="fix the left-hand side of `columns:` to match the file's header exactly")
    targets: list[str] = []
    for i, (h, k) in enumerate(zip(header, keys)):
        if k in explicit:
            targets.append(explicit[k])
        elif _normal(k) in canonical and _normal(k) not in explicit.values():
            targets.append(_normal(k))
        else:
            targets.append(h.strip().lstrip("\ufeff").strip() or f"column{i + 1}")
    repeated = sorted({k for k in keys if keys.count(k) > 1 and (k in explicit or _normal(k) in canonical)})
    if repeated:
        positions = [i + 1 for i, k in enumerate(keys) if k == repeated[0]]
        raise IngestError(
            f"the header has {len(positions)} columns named {repeated[0]!r} (positions "
            f"{', '.join(map(str, positions))}), so it is not clear which one holds the data",
            source=source["name"], path=str(source["path"]), row=0, column=repeated[0],
            hint="rename the columns in the file so that each name is used once (the `columns:` mapping "
                 "matches names, so it cannot pick one of them)")
    clash = sorted({t for t in targets if targets.count(t) > 1 and t in canonical})
    if clash:
        raise IngestError(f"more than one file column maps to {', '.join(clash)}", source=source["name"],
                          path=str(source["path"]), column=clash[0],
                          hint="map only one file column to each canonical column in `columns:`")
    targets = _unique(targets)  # repeated names of extra columns: name, name_2, ...
    missing = [c for c in REQUIRED_COLUMNS[kind] if c not in targets]
    if kind in ("events", "touchpoints") and not ({"source_customer_id", "anonymous_id"} & set(targets)):
        missing.append("source_customer_id or anonymous_id")
    if missing:
        unmapped = [h for h, t in zip(header, targets) if t not in canonical]
        suggestion, closest = {}, []
        for m in missing:
            pick = _closest(m.split(" ")[0], unmapped, cutoff=0.3)
            if pick is not None:
                closest.append(f"closest to {m.split(' ')[0]!r}: {pick.strip()!r}")
            suggestion[(pick or (unmapped[0] if unmapped else "<file column>")).strip()] = m.split(" ")[0]
        example = "{" + ", ".join(f"{k}: {v}" for k, v in suggestion.items()) + "}"
        raise IngestError(
            f"required {kind} column(s) {', '.join(map(repr, missing))} missing: neither in the file nor "
            f"mapped. The columns found in {found_in} are: {shown}" + (f" ({'; '.join(closest)})" if closest else ""),
            source=source["name"], path=str(source["path"]), column=missing[0],
            hint=f"add a mapping from the file's column to the canonical name under this source, e.g. "
                 f"`columns: {example}`")
    return targets


def _closest(name: str, candidates: list[str], cutoff: float = 0.4) -> str | None:
    """The candidate most like ``name``: one that contains it or is contained in it (``cust`` for
    ``customer_id``; at least 3 characters), else the nearest by :func:`difflib.get_close_matches`."""
    target = _normal(name)
    normal = {_normal(c): c for c in reversed(candidates)}
    nested = [n for n in normal if len(n) >= 3 and (n in target or target in n)]
    if nested:
        return normal[max(nested, key=lambda n: difflib.SequenceMatcher(None, n, target).ratio())]
    close = difflib.get_close_matches(target, list(normal), n=1, cutoff=cutoff)
    return normal[close[0]] if close else None


def _read_header(path: Path, delimiter: str, *, source: str, original: Path, encoding: str) -> list[str]:
    """The header fields of a UTF-8 file (already checked to decode)."""
    with open(path, "rb") as fh:
        head = fh.read(_HEAD)
    text = head.decode("utf-8-sig", errors="replace")
    try:
        header = next(csv.reader(io.StringIO(text), delimiter=delimiter))
    except StopIteration:
        header = []
    if not any(h.strip() for h in header):
        raise IngestError("the first line (the header) is empty", source=source, path=str(original), row=0,
                          hint="the file needs a header row naming its columns: remove the blank lines above it")
    return [h.lstrip("\ufeff") for h in header]


# -- encodings -------------------------------------------------------------------------------------------
def suggest_encoding(sample: bytes, exclude: str | None = None) -> str | None:
    """The first of :data:`ENCODING_CANDIDATES` that decodes ``sample`` strictly (UTF-16 only with a BOM,
    nothing for binary data: NUL bytes decode in any encoding but are no text)."""
    if _has_utf16_bom(sample):
        return "utf-16" if not (exclude and codecs.lookup(exclude).name.startswith("utf-16")) else None
    if sample.startswith(codecs.BOM_UTF8) and not (exclude and codecs.lookup(exclude).name.startswith("utf-8")):
        return "utf-8-sig"
    if b"\x00" in sample:
        return _utf16_without_bom(sample)
    excluded = codecs.lookup(exclude).name if exclude else None
    for enc in ENCODING_CANDIDATES:
        if codecs.lookup(enc).name == excluded or enc == "utf-16":
            continue
        if enc == "latin-1" and excluded in ("gbk", "gb18030", "big5", "shift_jis"):
            continue  # everything decodes as Latin-1; it is no advice for a CJK export
        try:
            sample.decode(enc)
            return enc
        except UnicodeDecodeError as exc:
            if exc.start >= len(sample) - 3:  # a character cut at the sample's end
                try:
                    sample[: exc.start].decode(enc)
                    return enc
                except UnicodeDecodeError:
                    pass
    return None


def _decode_error(path: Path, encoding: str, data: bytes, pos: int, *, source: str, row: int | None,
                  line: int | None, offset: int = 0, delimiter: str = ",", header: list[str] | None = None,
                  sample: bytes | None = None) -> IngestError:
    """An IngestError for bytes at ``data[pos]`` that are not ``encoding``."""
    start = data.rfind(b"\n", 0, pos) + 1
    column = None
    if header:
        prefix = data[start:pos].decode(encoding, errors="replace")
        fields = next(csv.reader(io.StringIO(prefix), delimiter=delimiter), [""])
        if 0 < len(fields) <= len(header):
            column = header[len(fields) - 1]
    bad = data[pos: pos + 4].hex(" ")
    guess = suggest_encoding(sample if sample is not None else data, exclude=encoding)
    hint = (f"set `encoding: {guess}` for this source (the file decodes as {guess})" if guess
            else "find the encoding the exporting system used and set `encoding:` for this source")
    where = f"line {line} of the file" if line is not None else "the file"
    return IngestError(
        f"text is not valid {encoding}: bytes {bad} at byte {offset + pos} ({where})",
        source=source, path=str(path), row=row, column=column, hint=hint,
        setting={"encoding": guess} if guess else None)


def transcode_to_utf8(path: str | Path, encoding: str, out: str | Path, *, source: str = "",
                      delimiter: str = ",", normalize_newlines: bool = False, max_rows: int | None = None,
                      gzipped: bool = False) -> Path:
    """Stream ``path`` from ``encoding`` into a UTF-8 file ``out`` (4 MiB chunks); return ``out``.

    Parameters
    ----------
    normalize_newlines : bool
        Write every CRLF (and lone CR) as LF: DuckDB refuses a file that mixes them.
    max_rows : int, optional
        Stop after the header and this many lines (a sample).
    gzipped : bool
        ``path`` is gzip-compressed.

    Raises
    ------
    IngestError
        At the first undecodable byte: its byte offset, file line, data row and column, and an encoding
        that decodes the file's first MiB plus the bad spot, when one of the candidates does.
    """
    path, out = Path(path), Path(out)
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    header: list[str] | None = None
    offset, lines = 0, 0
    opener = gzip.open if gzipped else open
    pending_cr = False
    with opener(path, "rb") as src, open(out, "w", encoding="utf-8", newline="") as dst:
        first = True
        while True:
            chunk = src.read(_CHUNK)
            final = not chunk
            try:
                text = decoder.decode(chunk, final=final)
            except UnicodeDecodeError:
                # the error's position is relative to the decoder's buffered input + this chunk; re-decode
                # the chunk alone to place it (the decoder buffers at most a few bytes)
                pos = _first_bad(chunk, encoding)
                if header is None and offset == 0:
                    first_line = chunk.split(b"\n", 1)[0].decode(encoding, errors="replace").lstrip("\ufeff")
                    header = next(csv.reader(io.StringIO(first_line), delimiter=delimiter), None)
                line = lines + chunk.count(b"\n", 0, pos) + 1
                with opener(path, "rb") as fh:
                    sample = fh.read(_HEAD)
                sample = sample + b"\n" + chunk[max(0, pos - 2048): pos + 2048]
                dst.close()
                out.unlink(missing_ok=True)
                raise _decode_error(path, encoding, chunk, pos, source=source, row=line - 1, line=line,
                                    offset=offset, delimiter=delimiter, header=header,
                                    sample=sample) from None
            if first:
                text = text.lstrip("\ufeff")
                if text:
                    header = next(csv.reader(io.StringIO(text.split("\n", 1)[0]), delimiter=delimiter), None)
                    first = False
            if normalize_newlines:
                if pending_cr:
                    text = "\r" + text
                pending_cr = text.endswith("\r") and not final
                if pending_cr:
                    text = text[:-1]
                text = text.replace("\r\n", "\n").replace("\r", "\n")
            if max_rows is not None:
                kept, stop = _first_lines(text, max_rows + 1 - lines)
                dst.write(kept)
                lines += kept.count("\n")
                if stop:
                    break
            else:
                dst.write(text)
                lines += chunk.count(b"\n")
            offset += len(chunk)
            if final:
                break
    return out


def _first_lines(text: str, n: int) -> tuple[str, bool]:
    """The first ``n`` lines of ``text`` (with their LF) and whether the limit was reached."""
    if n <= 0:
        return "", True
    idx = -1
    for _ in range(n):
        idx = text.find("\n", idx + 1)
        if idx < 0:
            return text, False
    return text[: idx + 1], True


def _first_bad(chunk: bytes, encoding: str) -> int:
    try:
        chunk.decode(encoding)
    except UnicodeDecodeError as exc:
        return exc.start
    return 0


def store_numbered(engine: Engine, raw: RawSource, expr: ibis.Table, name: str | None = None) -> ibis.Table:
    """Store ``expr`` - one scan of ``raw.table`` plus projections, no filter, join or sort - as the scratch
    relation ``name`` (default ``decided_<source>``), with ``_row_number`` first.

    The rows' ``_row_number`` counts the rows that split into the header's fields, in file order, on
    either engine: on DuckDB a CSV/JSON lines scan is numbered by the store itself
    (:func:`crmlib.ingest._sql_duckdb.create_numbered_table`, as fast as a plain copy); on Spark and for
    Parquet and Excel ``raw.table`` has ``_row_number`` already and ``expr`` carries it. Read
    :func:`rejected_rows` after this call (the scan fills DuckDB's rejects table), and shift the numbers
    past the rejected lines when there are any (both engines leave them out of the count).

    Raises
    ------
    IngestError
        When the engine cannot parse the file at all (the scan happens here on DuckDB).
    """
    name = name or f"decided_{raw.name}"
    try:
        if raw.row_numbers == "rowid":
            return _sql.create_numbered_table(engine, name, expr)
        return engine.scratch(name, expr)
    except _sql.Error as exc:
        first = str(exc).splitlines()[0]
        raise IngestError(f"the file cannot be read as {raw.format}: {first}", source=raw.name, path=raw.path,
                          hint="check `format:`, `delimiter:` and `encoding:` for this source") from None


def rejected_rows(engine: Engine, raw: RawSource) -> list[tuple[int, str, str]]:
    """Lines DuckDB could not split into the header's fields, after ``raw.table`` has been scanned.

    Returns ``(row_number, reason, raw line)`` triples (row number = the file's data record: 1 is the
    first record after the header, a quoted field spanning lines is one record). Raises
    :class:`IngestError` for bytes that are not UTF-8 (a wrong ``encoding:``), with the position and a
    suggested encoding (on Spark :func:`read_source` raises it).
    """
    if raw.rejected is not None:
        return list(raw.rejected)
    if raw.rejects_table is None:
        return []
    rejects = _sql.csv_rejects(engine, raw.rejects_table)
    bad_text = [r for r in rejects if r[1] == "INVALID ENCODING"]
    if bad_text:
        line = bad_text[0][0]
        read = raw.read_path or raw.path
        with _open_bytes(Path(read), source=raw.name) as fh:
            data = fh.read(64 << 20)
        starts = [0]
        idx = -1
        for _ in range(line - 1):
            idx = data.find(b"\n", idx + 1)
            if idx < 0:
                break
            starts.append(idx + 1)
        lo = starts[-1]
        hi = data.find(b"\n", lo)
        hi = len(data) if hi < 0 else hi
        pos = lo + _first_bad(data[lo:hi], "utf-8")
        enc = raw.source["encoding"]
        raise _decode_error(Path(raw.path), enc, data, pos, source=raw.name, row=line - 1, line=line,
                            delimiter=effective_delimiter(raw.source),
                            header=raw.file_columns, sample=data[:_HEAD] + b"\n" + data[lo:hi])
    reasons = {"TOO MANY COLUMNS": "malformed_row:too_many_fields",
               "MISSING COLUMNS": "malformed_row:too_few_fields"}
    return [(line - 1, reasons.get(kind, "malformed_row:" + kind.lower().replace(" ", "_")), text)
            for line, kind, text, _col in rejects]
