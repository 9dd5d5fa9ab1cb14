"""The params file: one YAML file describes a run (see the data contract, ``CONTRACT.md``).

:func:`load_params` reads the file, validates *all* of it before anything runs, and returns a plain
dict with defaults filled in and every path made absolute. Problems are collected, not raised one at a
time: unknown keys, wrong types, bad choices and missing files are reported together in one
:class:`ParamsError`, each with its key path (``sources[1].encoding``).

The schema below is the single source of truth for which keys exist; stages read their own section
(``params["segmentation"]["clv"]["time_unit"]``) and never re-validate it.
"""

from __future__ import annotations

import codecs
import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

__all__ = [
    "ParamsError",
    "load_params",
    "validate_params",
    "KINDS",
    "CANONICAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "FORMATS",
]

# -- the input kinds of the contract ------------------------------------------------------------
CANONICAL_COLUMNS: dict[str, list[str]] = {
    "contacts": [
        "source_customer_id", "name", "email", "phone", "gender", "birth_date", "city", "province",
        "country", "signup_ts", "consent_marketing", "loyalty_tier", "loyalty_points", "linked_ids",
    ],
    "orders": [
        "source_customer_id", "order_ts", "amount", "order_id", "currency", "channel", "store_id",
        "status", "items",
    ],
    "events": [
        "event_ts", "event_type", "source_customer_id", "anonymous_id", "page", "utm_source",
        "utm_medium", "utm_campaign", "device",
    ],
    "touchpoints": [
        "touch_ts", "channel", "source_customer_id", "anonymous_id", "campaign_id", "touch_type", "cost",
    ],
    "spend": ["date", "channel", "cost", "campaign_id", "impressions", "clicks"],
    "experiments": ["experiment_id", "source_customer_id", "variant", "assigned_ts", "is_control"],
    "surveys": ["source_customer_id", "response_ts", "nps_score", "csat", "category", "comment"],
}
REQUIRED_COLUMNS: dict[str, list[str]] = {
    "contacts": ["source_customer_id"],
    "orders": ["source_customer_id", "order_ts", "amount"],
    "events": ["event_ts", "event_type"],
    "touchpoints": ["touch_ts", "channel"],
    "spend": ["date", "channel", "cost"],
    "experiments": ["experiment_id", "source_customer_id", "variant", "assigned_ts"],
    "surveys": ["source_customer_id", "response_ts"],
}
KINDS = tuple(CANONICAL_COLUMNS)
FORMATS = ("csv", "tsv", "parquet", "jsonl", "xlsx")
_EXTENSION_FORMATS = {
    ".csv": "csv", ".txt": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".xlsx": "xlsx", ".xlsm": "xlsx",
}


class ParamsError(ValueError):
    """A params file that cannot be used. ``problems`` lists ``(key_path, message)`` pairs."""

    def __init__(self, path: str | Path, problems: list[tuple[str, str]]) -> None:
        self.path = str(path)
        self.problems = problems
        lines = [f"{len(problems)} problem(s) in params file {self.path}:"]
        lines += [f"  - {key}: {msg}" for key, msg in problems]
        super().__init__("\n".join(lines))


# -- a small declarative schema --------------------------------------------------------------------
_MISSING = object()


@dataclass
class Field:
    """A scalar (or free-form) value: ``kind`` is one of the checkers in ``_CHECKERS``."""

    kind: str
    default: Any = None
    required: bool = False
    choices: tuple | None = None
    nullable: bool = True
    doc: str = ""


@dataclass
class Section:
    """A mapping with a fixed set of keys; unknown keys are errors."""

    fields: dict[str, Any]
    doc: str = ""


@dataclass
class ListOf:
    """A list whose items all follow ``item``."""

    item: Any
    min_items: int = 0
    default: list = field(default_factory=list)


@dataclass
class MapOf:
    """A mapping with free keys whose values follow ``value`` (a Field kind name)."""

    value: str
    default: dict = field(default_factory=dict)


_SOURCE = Section({
    "name": Field("identifier", required=True, nullable=False, doc="unique source name"),
    "kind": Field("str", required=True, nullable=False, choices=KINDS),
    "path": Field("existing_path", required=True, nullable=False),
    "format": Field("str", choices=FORMATS, doc="default: from the file extension"),
    "encoding": Field("encoding", default="utf-8"),
    "columns": MapOf("str"),
    "id_source": Field("str", doc="the contacts source whose ids this source's ids are"),
    "sheet": Field("str_or_int", doc="xlsx: sheet name or 0-based index (default: first sheet)"),
    "delimiter": Field("str", doc="csv: field delimiter (default ',' for csv, tab for tsv)"),
    "date_format": Field("str", doc="strptime format for this source's dates, e.g. '%d/%m/%Y'"),
})

_EXPERIMENT = Section({
    "id": Field("str", required=True, nullable=False),
    "weights": MapOf("number"),
    "primary_metric": Field("str", default="conversion"),
    "secondary_metrics": ListOf(Field("str")),
    "guardrails": ListOf(Section({
        "metric": Field("str", required=True, nullable=False),
        "margin": Field("number", default=0.02, doc="relative non-inferiority margin"),
    })),
    "planned_n_per_arm": Field("int"),
    "holdout": Section({
        "channel": Field("str"),
        "campaign_id": Field("str"),
    }),
})

SCHEMA = Section({
    "run": Section({
        "name": Field("str", doc="label for run ids and the index; default: the params file name"),
        "as_of": Field("date", doc="analysis date, inclusive; default: the latest order date"),
        "timezone": Field("timezone", default="Asia/Shanghai"),
        "currency": Field("str", default="CNY"),
        "output_dir": Field("path", default="../reports"),
    }),
    "sources": ListOf(_SOURCE, min_items=1),
    "privacy": Section({
        "keep_pii": Field("bool", default=False, nullable=False),
        "default_phone_region": Field("str", default="CN", nullable=False),
        "salt": Field("str", doc="customer_key hash salt; the CRM_PII_SALT environment variable wins"),
    }),
    "ingest": Section({
        "tags": MapOf("str"),
        "future_tolerance_hours": Field("number", default=24, nullable=False,
                                        doc="slack after the analysis end (as_of/holdout_end, else now)"),
        "identity": Section({
            "method": Field("str", default="splink", choices=("splink", "deterministic")),
            "match_threshold": Field("number", default=0.5, nullable=False),
        }),
    }),
    "segmentation": Section({
        "clv": Section({
            "time_unit": Field("str", default="W", choices=("D", "W", "M"), nullable=False),
            "holdout_end": Field("date"),
            "horizon": Field("number", doc="in time units; null = one year (52 W, 365 D, 12 M)"),
            "discount_rate": Field("number", default=0.10, nullable=False, doc="annual"),
            "penalizer_coef": Field("number", default=0.0, nullable=False),
            "margin": Field("number", default=1.0, nullable=False, doc="CLV = margin x revenue"),
        }),
        "clusters": Section({
            "k": Field("int"),
            "k_min": Field("int", default=2, nullable=False),
            "k_max": Field("int", default=8, nullable=False),
            "seed": Field("int", default=0, nullable=False),
        }),
        "churn": Section({
            "thresholds": MapOf("number", default={"high": 0.3, "medium": 0.7}),
            "warning_top": Field("int", default=100, nullable=False, doc="length of the churn-warning list"),
        }),
        "loyalty": Section({
            "tiers": ListOf(Section({
                "name": Field("str", required=True, nullable=False),
                "min_spend": Field("number", required=True, nullable=False),
            })),
        }),
    }),
    "roi": Section({
        "lookback_days": Field("int", default=30, nullable=False),
        "half_life_days": Field("number", default=7, nullable=False),
        "position_weights": ListOf(Field("number"), default=[0.4, 0.2, 0.4]),
        "period_start": Field("date"),
        "period_end": Field("date"),
        "budget_bounds": Field("number", default=0.3, nullable=False),
        "mmm": Section({
            "enabled": Field("bool", default=True, nullable=False),
            "bootstrap": Field("int", default=200, nullable=False),
            "block_weeks": Field("int", default=4, nullable=False),
            "seed": Field("int", default=0, nullable=False),
        }),
    }),
    "ab_tests": Section({
        "window_days": Field("int", default=14, nullable=False),
        "alpha": Field("number", default=0.05, nullable=False),
        "correction": Field("str", default="holm", choices=("holm", "bh"), nullable=False),
        "sequential_tuning": Field("number", default=5000, nullable=False),
        "winsorize": Field("number", doc="upper percentile cap, e.g. 0.99; null = off"),
        "experiments": ListOf(_EXPERIMENT),
    }),
})


# -- checkers: (value, context) -> (converted value, error message or None) --------------------------
def _check_str(v, ctx):
    return (v, None) if isinstance(v, str) else (v, f"expected a string, got {_typename(v)} {v!r}")


def _check_identifier(v, ctx):
    if not isinstance(v, str) or not re.fullmatch(r"[A-Za-z0-9_]+", v):
        return v, f"expected a name of letters, digits and underscores, got {v!r}"
    return v, None


def _check_int(v, ctx):
    if isinstance(v, bool) or not isinstance(v, int):
        return v, f"expected an integer, got {_typename(v)} {v!r}"
    return v, None


def _check_number(v, ctx):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return v, f"expected a number, got {_typename(v)} {v!r}"
    return float(v), None


def _check_bool(v, ctx):
    return (v, None) if isinstance(v, bool) else (v, f"expected true or false, got {_typename(v)} {v!r}")


def _check_str_or_int(v, ctx):
    return (v, None) if isinstance(v, (str, int)) and not isinstance(v, bool) else (
        v, f"expected a sheet name or index, got {_typename(v)} {v!r}")


def _check_date(v, ctx):
    if isinstance(v, dt.date) and not isinstance(v, dt.datetime):
        return v.isoformat(), None  # YAML turned an unquoted date into a date: accept it, keep ISO text
    if isinstance(v, str):
        try:
            return dt.date.fromisoformat(v).isoformat(), None
        except ValueError:
            pass
    return v, f"expected a quoted ISO date like \"2026-06-30\", got {v!r}"


def _check_timezone(v, ctx):
    try:
        zoneinfo.ZoneInfo(str(v))
        return v, None
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return v, f"unknown time zone {v!r} (use an IANA name such as Asia/Shanghai)"


def _check_encoding(v, ctx):
    try:
        codecs.lookup(str(v))
        return v, None
    except LookupError:
        return v, f"unknown text encoding {v!r} (e.g. utf-8, gbk, gb18030, utf-16)"


def _check_path(v, ctx):
    if not isinstance(v, str):
        return v, f"expected a path string, got {_typename(v)} {v!r}"
    return str((ctx["base"] / v).resolve()), None


def _check_existing_path(v, ctx):
    v, err = _check_path(v, ctx)
    if err is None and not Path(v).is_file():
        err = f"file not found: {v}"
    return v, err


_CHECKERS: dict[str, Callable] = {
    "str": _check_str, "identifier": _check_identifier, "int": _check_int, "number": _check_number,
    "bool": _check_bool, "str_or_int": _check_str_or_int, "date": _check_date,
    "timezone": _check_timezone, "encoding": _check_encoding, "path": _check_path,
    "existing_path": _check_existing_path,
}


def _typename(v: Any) -> str:
    return {type(None): "null", dict: "a mapping", list: "a list"}.get(type(v), type(v).__name__)


def _validate(spec: Any, value: Any, key: str, ctx: dict, problems: list) -> Any:
    if isinstance(spec, Section):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            problems.append((key, f"expected a mapping, got {_typename(value)}"))
            return {}
        out = {}
        for k in value:
            if k not in spec.fields:
                known = ", ".join(spec.fields)
                problems.append((_join(key, k), f"unknown key (known keys here: {known})"))
        for k, sub in spec.fields.items():
            if k in value:
                out[k] = _validate(sub, value[k], _join(key, k), ctx, problems)
            elif isinstance(sub, Field) and sub.required:
                problems.append((_join(key, k), "required key is missing"))
                out[k] = None
            else:
                out[k] = _default(sub, ctx)
        return out
    if isinstance(spec, ListOf):
        if value is None:
            value = []
        if not isinstance(value, list):
            problems.append((key, f"expected a list, got {_typename(value)}"))
            return []
        if len(value) < spec.min_items:
            problems.append((key, f"needs at least {spec.min_items} item(s)"))
        return [_validate(spec.item, item, f"{key}[{i}]", ctx, problems) for i, item in enumerate(value)]
    if isinstance(spec, MapOf):
        if value is None:
            return {}
        if not isinstance(value, dict):
            problems.append((key, f"expected a mapping, got {_typename(value)}"))
            return {}
        return {str(k): _validate(Field(spec.value, nullable=False), v, _join(key, str(k)), ctx, problems)
                for k, v in value.items()}
    # Field
    if value is None:
        if not spec.nullable or spec.required:
            problems.append((key, "must not be null"))
        return None
    converted, err = _CHECKERS[spec.kind](value, ctx)
    if err:
        problems.append((key, err))
        return value
    if spec.choices and converted not in spec.choices:
        problems.append((key, f"must be one of {', '.join(map(str, spec.choices))}; got {converted!r}"))
    return converted


def _default(spec: Any, ctx: dict) -> Any:
    if isinstance(spec, Section):
        return {k: _default(sub, ctx) for k, sub in spec.fields.items()}
    if isinstance(spec, (ListOf, MapOf)):
        return type(spec.default)(spec.default)
    if spec.default is not None and spec.kind == "path":
        return _check_path(spec.default, ctx)[0]
    return spec.default


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _cross_checks(params: dict, problems: list) -> None:
    """Checks that span keys: unique source names, id_source targets, column mappings, formats."""
    sources = params.get("sources") or []
    names = [s.get("name") for s in sources]
    contacts = {s.get("name") for s in sources if s.get("kind") == "contacts"}
    for i, s in enumerate(sources):
        key = f"sources[{i}]"
        if names.count(s.get("name")) > 1:
            problems.append((f"{key}.name", f"duplicate source name {s.get('name')!r}"))
        if s.get("format") is None and s.get("path"):
            fmt = _EXTENSION_FORMATS.get(Path(s["path"]).suffix.lower())
            if fmt is None:
                problems.append((f"{key}.format", f"cannot tell the format from {Path(s['path']).name!r}; "
                                 f"set format to one of {', '.join(FORMATS)}"))
            s["format"] = fmt
        kind = s.get("kind")
        if kind in CANONICAL_COLUMNS:
            for src_col, canon in (s.get("columns") or {}).items():
                if canon not in CANONICAL_COLUMNS[kind]:
                    problems.append((f"{key}.columns.{src_col}",
                                     f"{canon!r} is not a canonical {kind} column "
                                     f"({', '.join(CANONICAL_COLUMNS[kind])})"))
        if s.get("id_source") is not None and s["id_source"] not in contacts:
            problems.append((f"{key}.id_source", f"{s['id_source']!r} is not the name of a contacts source "
                             f"(contacts sources: {', '.join(sorted(contacts)) or 'none'})"))
    if sources and not any(s.get("kind") == "orders" for s in sources):
        problems.append(("sources", "a run needs at least one source of kind 'orders'"))
    exp_ids = [e.get("id") for e in params.get("ab_tests", {}).get("experiments", [])]
    for i, e in enumerate(exp_ids):
        if exp_ids.count(e) > 1:
            problems.append((f"ab_tests.experiments[{i}].id", f"duplicate experiment id {e!r}"))


def validate_params(raw: Any, base_dir: str | Path, *, path: str | Path = "<params>") -> dict:
    """Validate a parsed params mapping; return it with defaults filled and paths absolute.

    Parameters
    ----------
    raw : mapping
        The parsed YAML.
    base_dir : str or Path
        Folder that relative paths resolve against (the params file's folder).
    path : str or Path
        Name of the file, for messages.

    Raises
    ------
    ParamsError
        Listing every problem found, each with its key path.
    """
    problems: list[tuple[str, str]] = []
    if not isinstance(raw, dict):
        raise ParamsError(path, [("<top>", f"expected a YAML mapping, got {_typename(raw)}")])
    ctx = {"base": Path(base_dir).resolve()}
    params = _validate(SCHEMA, raw, "", ctx, problems)
    _cross_checks(params, problems)
    if problems:
        raise ParamsError(path, problems)
    if not params["run"]["name"]:
        params["run"]["name"] = Path(str(path)).stem
    return params


def load_params(path: str | Path) -> dict:
    """Read and validate a params YAML file.

    Returns the validated dict; ``params["_path"]`` holds the file's absolute path.

    Raises
    ------
    ParamsError
        If the file is missing, is not YAML, or fails validation (all problems listed).
    """
    path = Path(path)
    if not path.is_file():
        raise ParamsError(path, [("<file>", f"params file not found: {path.resolve()}")])
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "<file>"
        raise ParamsError(path, [(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    except UnicodeDecodeError as exc:
        raise ParamsError(path, [("<file>", f"params files must be UTF-8 ({exc.reason})")]) from None
    params = validate_params(raw, path.parent, path=path)
    params["_path"] = str(path.resolve())
    return params
