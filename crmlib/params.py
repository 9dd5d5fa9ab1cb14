"""The params file: one YAML file describes a run (see the data contract, ``CONTRACT.md``).

The typed model :class:`Params` (pydantic v2, unknown keys forbidden) is the single source of truth for
which keys exist, their types and their defaults; ``docs/PARAMS.md`` is generated from it
(``python -m crmlib.params --markdown``). No stage re-defaults a key: stages read the dict that
:func:`load_params` (a run) or :func:`complete_params` (code and tests that need settings) returns.

:func:`load_params` reads the file, validates *all* of it before anything runs, and returns a plain
dict with every default filled in and every path made absolute. Problems are collected, not raised one
at a time: unknown keys, wrong types, bad choices, missing files and cross-key conflicts are reported
together in one :class:`ParamsError`, each with its key path (``sources[1].encoding``) and the line of
the YAML file it is on. YAML anchors and aliases are refused (an "alias bomb" never expands) and every
message is capped in size.
"""

from __future__ import annotations

import calendar
import codecs
import copy
import datetime as dt
import os
import re
import sys
import types
import typing
import unicodedata
import zoneinfo
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)

__all__ = [
    "ParamsError",
    "Params",
    "load_params",
    "validate_params",
    "complete_params",
    "complete_source",
    "effective_delimiter",
    "experiment_defaults",
    "public_params",
    "plain_name_problem",
    "schema_default",
    "params_markdown",
    "KINDS",
    "CANONICAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "FORMATS",
    "USUAL_THOUSANDS",
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
    "order_lines": ["order_id", "product_id", "quantity", "amount", "product_name", "category", "brand"],
}
REQUIRED_COLUMNS: dict[str, list[str]] = {
    "contacts": ["source_customer_id"],
    "orders": ["source_customer_id", "order_ts", "amount"],
    "events": ["event_ts", "event_type"],
    "touchpoints": ["touch_ts", "channel"],
    "spend": ["date", "channel", "cost"],
    "experiments": ["experiment_id", "source_customer_id", "variant", "assigned_ts"],
    "surveys": ["source_customer_id", "response_ts"],
    "order_lines": ["order_id", "product_id"],
}
KINDS = tuple(CANONICAL_COLUMNS)
FORMATS = ("csv", "tsv", "parquet", "jsonl", "xlsx")
_EXTENSION_FORMATS = {
    ".csv": "csv", ".txt": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".xlsx": "xlsx", ".xlsm": "xlsx",
}
#: The thousands separator used when ``sources[].thousands`` is null, per decimal mark.
USUAL_THOUSANDS = {".": ",", ",": "."}

# Limits that keep a hostile or broken params file from producing huge messages or eating memory.
MAX_MESSAGE_CHARS = 300
MAX_PROBLEMS_SHOWN = 50
MAX_PARAMS_BYTES = 2_000_000
MAX_NAME_CHARS = 100


class ParamsError(ValueError):
    """A params file that cannot be used.

    ``problems`` lists ``(key_path, message)`` pairs (key paths like ``sources[1].encoding``);
    ``lines`` maps a key path to its line in the YAML file where known. The text shows at most
    ``MAX_PROBLEMS_SHOWN`` problems, each cut to ``MAX_MESSAGE_CHARS`` characters.
    """

    def __init__(self, path: str | Path, problems: list[tuple[str, str]],
                 lines: dict[str, int] | None = None) -> None:
        self.path = str(path)
        self.problems = [(str(k)[:MAX_MESSAGE_CHARS], _cap(str(m))) for k, m in problems]
        self.lines = dict(lines or {})
        head = [f"{len(self.problems)} problem(s) in params file {_cap(self.path)}:"]
        shown = []
        for key, msg in self.problems[:MAX_PROBLEMS_SHOWN]:
            line = self.lines.get(key)
            where = f"{key} (line {line})" if line else key
            shown.append(_cap(f"  - {where}: {msg}"))
        if len(self.problems) > MAX_PROBLEMS_SHOWN:
            shown.append(f"  ... and {len(self.problems) - MAX_PROBLEMS_SHOWN} more")
        super().__init__("\n".join(head + shown))


def _cap(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 15] + " ... (cut)"


def _show(value: Any, limit: int = 60) -> str:
    """A short repr of a user's value for a message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + " ...'"


def _typename(v: Any) -> str:
    return {type(None): "null", dict: "a mapping", list: "a list"}.get(type(v), type(v).__name__)


# -- plain names ------------------------------------------------------------------------------------
def plain_name_problem(text: str) -> str | None:
    """Why ``text`` cannot be a run name or run id (it becomes a folder name), or None when it can.

    A plain name has no path separators (``/``, ``\\``), no ``..``, does not start with ``.``, has no
    control characters and is at most 100 characters long. Any letters are fine, Chinese included.
    """
    if not isinstance(text, str):
        return f"expected a name, got {_typename(text)} {_show(text)}"
    if not text.strip():
        return "must not be empty"
    if len(text) > MAX_NAME_CHARS:
        return f"is {len(text)} characters long; a name has at most {MAX_NAME_CHARS}"
    if "/" in text or "\\" in text:
        return f"{_show(text)} must not contain '/' or '\\' (it names a folder, not a path)"
    if ".." in text:
        return f"{_show(text)} must not contain '..'"
    if text.startswith("."):
        return f"{_show(text)} must not start with '.' (hidden folders are the runner's temporary ones)"
    if any(unicodedata.category(c).startswith("C") for c in text):
        return f"{_show(text)} must not contain control or invisible format characters"
    return None


# -- value checkers (pydantic validators; ValueError texts become the problem messages) -------------
def _check_date(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, dt.date) and not isinstance(v, dt.datetime):
        return v.isoformat()
    if isinstance(v, str):
        m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", v.strip())
        if m:
            year, month, day = map(int, m.groups())
            if not 1 <= month <= 12:
                raise ValueError(f"{_show(v)} is not a date that exists: there is no month {month}")
            last = calendar.monthrange(year, month)[1]
            if not 1 <= day <= last:
                raise ValueError(f"{_show(v)} is not a date that exists: {calendar.month_name[month]} {year} "
                                 f"has {last} days")
            return dt.date(year, month, day).isoformat()
    raise ValueError(f"expected a date like \"2026-06-30\" (year-month-day), got {_show(v)}")


def _check_timezone(v: Any) -> Any:
    if not isinstance(v, str):
        raise ValueError(f"expected a time zone name, got {_typename(v)} {_show(v)}")
    try:
        zoneinfo.ZoneInfo(v)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {_show(v)} (use an IANA name such as Asia/Shanghai)") from None
    return v


def _check_encoding(v: Any) -> Any:
    if not isinstance(v, str):
        raise ValueError(f"expected an encoding name, got {_typename(v)} {_show(v)}")
    try:
        codecs.lookup(v)
    except LookupError:
        raise ValueError(f"unknown text encoding {_show(v)} (e.g. utf-8, gbk, gb18030, utf-16)") from None
    return v


def _check_identifier(v: Any) -> Any:
    if not isinstance(v, str) or not re.fullmatch(r"[A-Za-z0-9_]+", v):
        raise ValueError(f"expected a name of letters, digits and underscores, got {_show(v)}")
    return v


def _check_plain_name(v: Any) -> Any:
    if v is not None:
        problem = plain_name_problem(v)
        if problem:
            raise ValueError(problem)
    return v


def _check_sheet(v: Any) -> Any:
    if v is None or (isinstance(v, (str, int)) and not isinstance(v, bool)):
        return v
    raise ValueError(f"expected a sheet name or 0-based index, got {_typename(v)} {_show(v)}")


def _resolve_path(v: Any, info: ValidationInfo) -> Any:
    if not isinstance(v, str):
        raise ValueError(f"expected a path, got {_typename(v)} {_show(v)}")
    base = Path((info.context or {}).get("base") or Path.cwd())
    return str((base / v).resolve())


def _check_existing_file(v: str, info: ValidationInfo) -> str:
    if (info.context or {}).get("check_files", True) and not Path(v).is_file():
        raise ValueError(f"file not found: {v}")
    return v


def _string_keys(v: Any) -> Any:
    # YAML turns a column header such as 2024 into an int key; it is still a column name
    if isinstance(v, dict):
        return {str(k) if isinstance(k, (int, float)) and not isinstance(k, bool) else k: x for k, x in v.items()}
    return {} if v is None else v


def _empty_list(v: Any) -> Any:
    return [] if v is None else v


DateText = Annotated[str | None, BeforeValidator(_check_date)]
Timezone = Annotated[str, BeforeValidator(_check_timezone)]
Encoding = Annotated[str, BeforeValidator(_check_encoding)]
Identifier = Annotated[str, BeforeValidator(_check_identifier)]
PathText = Annotated[str, BeforeValidator(_resolve_path)]
ExistingFile = Annotated[str, BeforeValidator(_resolve_path), AfterValidator(_check_existing_file)]
NameMap = Annotated[dict[str, str], BeforeValidator(_string_keys)]
NumberMap = Annotated[dict[str, float], BeforeValidator(_string_keys)]


def _doc(default: Any = None, doc: str = "", *, type_name: str | None = None, **kw: Any) -> Any:
    """A field with its documentation (and, where the annotation does not say it well, its type name)."""
    extra = {"type_name": type_name} if type_name else None
    if "default_factory" in kw:
        return Field(description=doc, json_schema_extra=extra, **kw)
    return Field(default, description=doc, json_schema_extra=extra, **kw)


def _req(doc: str, *, type_name: str | None = None) -> Any:
    extra = {"type_name": type_name} if type_name else None
    return Field(..., description=doc, json_schema_extra=extra)


class _Section(BaseModel):
    """A mapping with a fixed set of keys: unknown keys are errors, types are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_empty(cls, data: Any) -> Any:
        # `section:` with nothing under it is YAML null: every default applies
        return {} if data is None else data


def _section(cls: type[BaseModel], doc: str = "") -> Any:
    return Field(default_factory=cls, description=doc)


def _list(item_doc: str, default_factory=list, **kw: Any) -> Any:
    return Field(default_factory=default_factory, description=item_doc, **kw)


# -- the schema -------------------------------------------------------------------------------------
class Run(_Section):
    """``run``: what the run is called, the analysis date and where results go."""

    name: Annotated[str | None, AfterValidator(_check_plain_name)] = _doc(
        None, "label for run ids and the reports index (a plain name: no '/', '\\', '..', leading '.' "
              "or control characters, at most 100 characters); null = the params file's name")
    as_of: DateText = _doc(
        None, "analysis date, inclusive: everything up to the end of this day (local time) counts; "
              "null = the date of the latest order. Resolved once per run and written to "
              "tables/as_of.json", type_name="date")
    timezone: Timezone = _doc("Asia/Shanghai", "IANA time zone: naive timestamps are local to it and "
                                               "offsets are converted to it", type_name="time zone")
    currency: str = _doc("CNY", "currency code of amounts and costs (a label)")
    language: Literal["en", "zh-CN"] = _doc("en", "language of the report pages: en (English) or zh-CN "
                                                  "(Simplified Chinese)")
    output_dir: PathText = _doc("../reports", "folder that receives one folder per run (relative to the "
                                              "params file)", type_name="path", validate_default=True)


def _memory_size(value: Any) -> Any:
    if value is None:
        return None
    text = str(value).strip()
    if not re.fullmatch(r"(?i)\d+(\.\d+)?\s*(k|m|g|t)i?b", text):
        raise ValueError(f"{value!r} is not a memory size; write it like 3GB, 2GiB or 512MB")
    return text


MemorySize = Annotated[str | None, BeforeValidator(_memory_size)]


class EngineSettings(_Section):
    """``engine``: which engine runs the row-level work, and its limits."""

    kind: Literal["duckdb", "spark"] = _doc("duckdb", "duckdb (embedded, one machine) or spark (pip install "
                                                      "'crmlib[spark]'; README, Running on Spark)")
    master: str = _doc("local[*]", "Spark master URL (spark only): local[*], local[2], spark://host:7077, "
                                   "yarn, or sc://host:15002 for Spark Connect; ignored when a Spark session "
                                   "is already active (spark-submit)")
    conf: dict[str, str | int | float | bool] = _doc(None, "Spark configuration entries (spark only), e.g. "
                                                           "spark.executor.memory: 8g", default_factory=dict)
    memory_limit: MemorySize = _doc(None, "DuckDB memory limit (e.g. 3GB; on spark with a local master: the "
                                          "driver memory); null = CRM_DUCKDB_MEMORY_LIMIT, else 1/12 of the "
                                          "machine's memory (at least 1 GiB, at most 16 GiB)", type_name="size")
    threads: int | None = _doc(None, "DuckDB worker threads; null = all cores", ge=1)


class Source(_Section):
    """``sources[]``: one input file."""

    name: Identifier = _req("unique source name (letters, digits, underscores)", type_name="name")
    kind: Literal[KINDS] = _req("what the file holds")  # type: ignore[valid-type]
    path: ExistingFile = _req("the file (relative to the params file); it must exist", type_name="path")
    format: Literal[FORMATS] | None = _doc(None, "null = from the file extension")  # type: ignore[valid-type]
    encoding: Encoding = _doc("utf-8", "text encoding of csv/tsv/jsonl files (e.g. utf-8, gbk, gb18030, "
                                       "utf-16)", type_name="encoding")
    columns: NameMap = _doc(None, "source column -> canonical column of this kind", default_factory=dict)
    id_source: str | None = _doc(None, "the contacts source whose ids this source's customer ids are")
    orders_source: str | None = _doc(None, "order_lines: the orders source whose order_id the lines' "
                                           "order_id refers to; null = the only orders source (required "
                                           "when the params have several)")
    sheet: Annotated[str | int | None, BeforeValidator(_check_sheet)] = _doc(
        None, "xlsx: sheet name or 0-based index; required when the workbook has several sheets", type_name="string or integer")
    delimiter: str | None = _doc(None, "csv: field delimiter; null = ',' for csv, tab for tsv")
    date_format: str | None = _doc(None, "strptime format of this source's dates, e.g. '%d/%m/%Y'; "
                                         "null = ISO and the common formats")
    header_row: int | None = _doc(None, "xlsx: the 1-based sheet row that holds the header; null = the "
                                        "first row that holds the mapped columns (title rows above it are "
                                        "skipped and counted)", ge=1)
    decimal: Literal[".", ","] = _doc(".", "decimal mark of amounts and costs in text files")
    thousands: Literal[",", ".", " ", "'", ""] | None = _doc(
        None, "thousands separator of amounts and costs; null = the usual one for the decimal mark "
              "(',' for '.'; '.' or a space for ','); '' = none. Must differ from decimal")


class Identity(_Section):
    """``ingest.identity``: how records of one person across sources are linked."""

    method: Literal["splink", "deterministic"] = _doc(
        "splink", "splink: shared email/phone judged by a Fellegi-Sunter model; deterministic: every "
                  "shared email, phone or linked id links (merges households and colleagues)")
    match_threshold: float = _doc(
        0.5, "minimum match probability to accept a scored pair, in (0, 1); below 0.5 a scored pair "
             "becomes a cannot-link, so 0.5 accepts every pair the model finds likelier than not",
        gt=0.0, lt=1.0)


class Ingest(_Section):
    """``ingest``: reading, validating and linking the sources."""

    tags: NameMap = _doc(None, "tag name -> rule over a customer's columns, e.g. \"revenue >= 5000\"",
                         default_factory=dict)
    future_tolerance_hours: float = _doc(
        24.0, "a timestamp later than the end of run.as_of (or segmentation.clv.holdout_end if later; "
              "without run.as_of, the run's wall-clock time) plus this many hours is quarantined")
    max_abs_amount: float = _doc(
        1e9, "amounts and costs beyond this in either sign are quarantined as absurd; at most 1e15, "
             "where float64 stops holding whole cents", gt=0.0, le=1e15)
    allow_duplicate_sources: bool = _doc(
        False, "two sources that are the same file or have the same content are an error; true makes "
               "that a warning")
    identity: Identity = _section(Identity, "identity resolution")


class Privacy(_Section):
    """``privacy``: personal data."""

    keep_pii: bool = _doc(False, "keep names, emails and phones in the run's tables (never in reports)")
    default_phone_region: str = _doc("CN", "region of phone numbers written without a country code")
    salt: str | None = _doc(None, "salt of the customer_key hash; the CRM_PII_SALT environment variable "
                                  "wins. Never published: the manifest records only where it came from")


class Clv(_Section):
    """``segmentation.clv``: BG/NBD + Gamma-Gamma customer lifetime value."""

    time_unit: Literal["D", "W", "M"] = _doc("W", "time unit of the models: day, week or month")
    holdout_end: DateText = _doc(None, "evaluate the models on orders in (run.as_of, holdout_end]; "
                                       "null = no holdout evaluation", type_name="date")
    horizon: float | None = _doc(None, "CLV horizon in time units; null = one year (365 D, 52 W, 12 M)",
                                 gt=0.0)
    discount_rate: float = _doc(0.10, "annual discount rate", ge=0.0)
    penalizer_coef: float = _doc(0.0, "L2 penalty of both fitters", ge=0.0)
    margin: float = _doc(1.0, "CLV = margin x revenue")


class Clusters(_Section):
    """``segmentation.clusters``: K-means on RFM features."""

    k: int | None = _doc(None, "number of clusters; null = the best silhouette in k_min..k_max", ge=2)
    k_min: int = _doc(2, "smallest k tried", ge=2)
    k_max: int = _doc(8, "largest k tried", ge=2)
    seed: int = _doc(0, "random seed")


class ChurnThresholds(_Section):
    """``segmentation.churn.thresholds``: P(alive) cut-offs of the churn-risk tiers."""

    high: float = _doc(0.3, "P(alive) below this: high risk", ge=0.0, le=1.0)
    medium: float = _doc(0.7, "P(alive) below this (and not high): medium risk", ge=0.0, le=1.0)


class Churn(_Section):
    """``segmentation.churn``: churn-risk tiers and the churn-warning list."""

    thresholds: ChurnThresholds = _section(ChurnThresholds, "churn-risk cut-offs")
    warning_top: int = _doc(100, "length of the churn-warning list", ge=0)


class LoyaltyTier(_Section):
    """``segmentation.loyalty.tiers[]``."""

    name: str = _req("tier name")
    min_spend: float = _req("net spend in the last 365 days that reaches this tier")


def _default_tiers() -> list[LoyaltyTier]:
    return [LoyaltyTier(name=n, min_spend=s) for n, s in
            (("Bronze", 0.0), ("Silver", 1000.0), ("Gold", 5000.0), ("Platinum", 20000.0))]


class Loyalty(_Section):
    """``segmentation.loyalty``: loyalty tiers by 12-month net spend."""

    tiers: Annotated[list[LoyaltyTier], BeforeValidator(_empty_list)] = _list(
        "tiers by minimum 12-month net spend; default Bronze 0, Silver 1000, Gold 5000, Platinum 20000",
        default_factory=_default_tiers, min_length=1)


class Recommend(_Section):
    """``segmentation.recommend``: product recommendations from order lines and their holdout test."""

    k: int = _doc(10, "products per customer list", ge=1)
    horizon_days: int = _doc(30, "the window the lists are for; also the test window of the evaluation (the "
                                 "last horizon_days up to run.as_of, learnt from the purchases before them)", ge=1)
    neighbours: int = _doc(20, "'also bought' partners kept per product", ge=1)
    min_product_baskets: int = _doc(5, "products in fewer baskets take no part in co-occurrence", ge=1)
    min_pair_baskets: int = _doc(3, "minimum support of an 'also bought' pair, in baskets (lift favours rare "
                                    "products; this keeps chance pairs out)", ge=1)
    max_basket_size: int = _doc(30, "a larger basket keeps only its best-selling products for co-occurrence",
                                ge=2)
    cooc_weight: float = _doc(0.1, "weight of co-occurrence beside the repurchase signal in the next-basket list",
                              ge=0.0)
    evaluation_customers: int = _doc(50000, "customers the evaluation scores (a random sample above this; "
                                            "0 = all)", ge=0)
    exclude_products: Annotated[list[str], BeforeValidator(_empty_list)] = _list("product ids never recommended")
    exclude_categories: Annotated[list[str], BeforeValidator(_empty_list)] = _list(
        "categories never recommended")


class Feedback(_Section):
    """``segmentation.feedback``: complaints, NPS by category and comment words (crmlib.segmentation.feedback)."""

    months: int = _doc(12, "calendar months of survey answers analysed, up to run.as_of", ge=1)
    min_answers: int = _doc(30, "fewer answers in those months: no feedback analysis", ge=1)
    top_terms: int = _doc(30, "most frequent comment words kept, overall and per category", ge=1)


class Segmentation(_Section):
    """``segmentation``: RFM, clusters, CLV, churn, loyalty and product recommendations."""

    clv: Clv = _section(Clv)
    clusters: Clusters = _section(Clusters)
    churn: Churn = _section(Churn)
    loyalty: Loyalty = _section(Loyalty)
    recommend: Recommend = _section(Recommend)
    feedback: Feedback = _section(Feedback)


class Mmm(_Section):
    """``roi.mmm``: the weekly media-mix model."""

    enabled: bool = _doc(True, "fit the media-mix model")
    bootstrap: int = _doc(200, "bootstrap draws for the intervals", ge=1)
    block_weeks: int = _doc(4, "moving-block length of the bootstrap, weeks", ge=1)
    seed: int = _doc(0, "random seed")


class FunnelStep(_Section):
    """``roi.funnel.steps[]``: one step of the conversion funnel."""

    name: str = _req("step name shown on the pages")
    event_types: Annotated[list[str], BeforeValidator(_empty_list)] = Field(
        ..., description="event_type values of the events that reach this step", min_length=1)


def _default_funnel_steps() -> list[FunnelStep]:
    return [FunnelStep(name=n, event_types=[e]) for n, e in (
        ("visit", "page_view"), ("product view", "product_view"), ("add to cart", "add_to_cart"),
        ("checkout", "checkout"), ("purchase", "purchase"))]


class Funnel(_Section):
    """``roi.funnel``: the conversion funnel from web/app events (crmlib.roi.funnel)."""

    enabled: bool = _doc(True, "compute the funnel when the run has events")
    steps: Annotated[list[FunnelStep], BeforeValidator(_empty_list)] = _list(
        "ordered steps; default visit (page_view), product view (product_view), add to cart (add_to_cart), "
        "checkout (checkout), purchase (purchase)", default_factory=_default_funnel_steps, min_length=2)
    window_days: float = _doc(7.0, "a step counts when reached within this many days of the user's first "
                                   "step of the week", gt=0.0)
    order_step: str | None = _doc("purchase", "the step an order of the same customer also reaches, placed "
                                              "within order_window_days after the step before; null = events only")
    order_window_days: float = _doc(3.0, "days after the step before within which an order counts for "
                                         "order_step", gt=0.0)
    min_users: int = _doc(30, "fewer users at the first step: no funnel; a device or channel with fewer "
                              "users at a step is not named in the findings", ge=1)

    @model_validator(mode="after")
    def _steps_consistent(self) -> "Funnel":
        names = [s.name for s in self.steps]
        if len(set(names)) != len(names):
            raise ValueError(f"step names must differ; got {names}")
        seen: dict[str, str] = {}
        for step in self.steps:
            for event_type in step.event_types:
                if event_type in seen:
                    raise ValueError(f"event type {_show(event_type)} is in two steps ({_show(seen[event_type])} "
                                     f"and {_show(step.name)})")
                seen[event_type] = step.name
        if self.order_step is not None and self.order_step not in names:
            raise ValueError(f"order_step {_show(self.order_step)} is not one of the steps ({', '.join(names)})")
        return self


class Roi(_Section):
    """``roi``: journeys, attribution, ROI, media mix, budget and the conversion funnel."""

    lookback_days: int = _doc(30, "journey lookback window before a conversion, days", ge=1)
    half_life_days: float = _doc(7.0, "time-decay attribution half-life, days", gt=0.0)
    position_weights: Annotated[list[float], BeforeValidator(_empty_list)] = _list(
        "position-based attribution weights: first, middle, last",
        default_factory=lambda: [0.4, 0.2, 0.4], min_length=3, max_length=3)
    period_start: DateText = _doc(None, "analysis period start (inclusive); null = all data", type_name="date")
    period_end: DateText = _doc(None, "analysis period end (inclusive); null = run.as_of", type_name="date")
    budget_bounds: float = _doc(0.3, "budget proposal: +/- this fraction of each channel's current weekly "
                                     "spend", ge=0.0)
    mmm: Mmm = _section(Mmm)
    funnel: Funnel = _section(Funnel)


class Guardrail(_Section):
    """``ab_tests.experiments[].guardrails[]``."""

    metric: str = _req("metric that must not get worse")
    margin: float = _doc(0.02, "relative non-inferiority margin")


class Holdout(_Section):
    """``ab_tests.experiments[].holdout``: a campaign holdout."""

    channel: str | None = _doc(None, "channel of the held-out campaign")
    campaign_id: str | None = _doc(None, "campaign id of the held-out campaign")


class Experiment(_Section):
    """``ab_tests.experiments[]``."""

    id: str = _req("experiment id as in the experiments file")
    weights: NumberMap = _doc(None, "planned traffic share per variant (for the SRM check); empty = equal",
                              default_factory=dict)
    primary_metric: str = _doc("conversion", "the metric the verdict is about")
    secondary_metrics: Annotated[list[str], BeforeValidator(_empty_list)] = _list("further metrics reported")
    guardrails: Annotated[list[Guardrail], BeforeValidator(_empty_list)] = _list("metrics that must not get worse")
    planned_n_per_arm: int | None = _doc(None, "planned sample size per arm (for the power table)", ge=1)
    holdout: Holdout = _section(Holdout)


class AbTests(_Section):
    """``ab_tests``: experiment analysis."""

    window_days: int = _doc(14, "outcome window after assignment, days", ge=1)
    alpha: float = _doc(0.05, "significance level", gt=0.0, lt=1.0)
    correction: Literal["holm", "bh"] = _doc("holm", "multiple-testing correction: Holm or Benjamini-Hochberg")
    sequential_tuning: float = _doc(5000.0, "tuning of the always-valid sequential test", gt=0.0)
    winsorize: float | None = _doc(None, "upper percentile cap of continuous metrics, e.g. 0.99; null = off",
                                   gt=0.0, le=1.0)
    experiments: Annotated[list[Experiment], BeforeValidator(_empty_list)] = _list("experiments to analyse")


class Params(_Section):
    """A whole params file."""

    run: Run = _section(Run)
    engine: EngineSettings = _section(EngineSettings)
    sources: Annotated[list[Source], BeforeValidator(_empty_list)] = _list("input files (at least one of kind "
                                                                          "orders for a run)")
    privacy: Privacy = _section(Privacy)
    ingest: Ingest = _section(Ingest)
    segmentation: Segmentation = _section(Segmentation)
    roi: Roi = _section(Roi)
    ab_tests: AbTests = _section(AbTests)

    @model_validator(mode="after")
    def _format_from_extension(self) -> "Params":
        for s in self.sources:
            if s.format is None:
                s.format = _EXTENSION_FORMATS.get(Path(s.path).suffix.lower())
        return self


# -- pydantic errors -> (key path, plain message) ---------------------------------------------------
def _key_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else str(part)
    return out or "<top>"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The model class whose field set holds the last key of ``loc``."""
    cls: type[BaseModel] | None = Params
    for part in loc[:-1]:
        if isinstance(part, int) or cls is None:
            continue
        field = cls.model_fields.get(str(part))
        found = _models_in(field.annotation) if field else []
        cls = found[0] if found else None
    return cls


_TYPE_WORDS = {
    "string_type": "a string", "int_type": "an integer", "float_type": "a number", "bool_type": "true or false",
    "model_type": "a mapping", "dict_type": "a mapping", "model_attributes_type": "a mapping",
    "list_type": "a list", "int_from_float": "an integer",
}


def _message(err: dict) -> str:
    kind, value = err["type"], err.get("input")
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        cls = _model_at(err["loc"])
        known = ", ".join(cls.model_fields) if cls else ""
        return f"unknown key (known keys here: {known})"
    if kind == "value_error":
        return str(err.get("ctx", {}).get("error", err["msg"]))
    if value is None and kind != "literal_error":
        return "must not be null"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"must be one of {expected}; got {_show(value)}"
    if kind in ("too_short", "too_long"):
        ctx = err.get("ctx", {})
        n = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        return f"needs {'at least' if kind == 'too_short' else 'at most'} {n} item(s); got {_show(value)}"
    if kind in _TYPE_WORDS:
        return f"expected {_TYPE_WORDS[kind]}, got {_typename(value)} {_show(value)}"
    return f"{err['msg'].replace('Input should', 'must').replace('List', 'the list')}; got {_show(value)}"


def _problems_from(exc: ValidationError) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors(include_url=False):
        loc = err["loc"]
        if err["type"] == "literal_error" and err.get("input") is None:
            out.append((_key_path(loc), "must not be null"))
            continue
        out.append((_key_path(loc), _message(err)))
    return out


# -- checks that span keys --------------------------------------------------------------------------
def _check_orders_source(key: str, source: dict, sources: list[dict], problems: list) -> None:
    """``orders_source`` names an orders source, is set on order_lines sources only, and is required
    when several orders sources could own the lines (guessing one would join lines to the wrong orders)."""
    orders = [s.get("name") for s in sources if s.get("kind") == "orders"]
    named = source.get("orders_source")
    if named is not None and source.get("kind") != "order_lines":
        problems.append((f"{key}.orders_source", f"only order_lines sources take orders_source; this source is "
                         f"of kind {_show(source.get('kind'))}"))
    elif named is not None and named not in orders:
        problems.append((f"{key}.orders_source", f"{_show(named)} is not the name of an orders source "
                         f"(orders sources: {', '.join(sorted(map(str, orders))) or 'none'})"))
    elif named is None and source.get("kind") == "order_lines" and len(orders) > 1:
        problems.append((f"{key}.orders_source", "required: the params have several orders sources "
                         f"({', '.join(map(str, orders))}); set orders_source: to the one whose order_id "
                         "these lines carry"))


def _cross_checks(raw: dict, problems: list, *, need_orders: bool) -> None:
    """Unique source names, id_source targets, column mappings, formats, separators, experiment ids.

    Run on the raw mapping (defensively typed), so they are reported together with the key problems.
    """
    sources = raw.get("sources")
    sources = [s if isinstance(s, dict) else {} for s in sources] if isinstance(sources, list) else []
    names = Counter(s.get("name") for s in sources if isinstance(s.get("name"), str))
    contacts = {s.get("name") for s in sources if s.get("kind") == "contacts"}
    for i, s in enumerate(sources):
        key = f"sources[{i}]"
        if names.get(s.get("name"), 0) > 1:
            problems.append((f"{key}.name", f"duplicate source name {_show(s.get('name'))}"))
        if s.get("format") is None and isinstance(s.get("path"), str):
            if _EXTENSION_FORMATS.get(Path(s["path"]).suffix.lower()) is None:
                problems.append((f"{key}.format", f"cannot tell the format from {_show(Path(s['path']).name)}; "
                                 f"set format to one of {', '.join(FORMATS)}"))
        kind, columns = s.get("kind"), s.get("columns")
        if kind in CANONICAL_COLUMNS and isinstance(columns, dict):
            for src_col, canon in columns.items():
                if isinstance(canon, str) and canon not in CANONICAL_COLUMNS[kind]:
                    problems.append((f"{key}.columns.{src_col}",
                                     f"{_show(canon)} is not a canonical {kind} column "
                                     f"({', '.join(CANONICAL_COLUMNS[kind])})"))
        if s.get("id_source") is not None and s["id_source"] not in contacts:
            problems.append((f"{key}.id_source", f"{_show(s['id_source'])} is not the name of a contacts source "
                             f"(contacts sources: {', '.join(sorted(map(str, contacts))) or 'none'})"))
        _check_orders_source(key, s, sources, problems)
        decimal = s.get("decimal", Source.model_fields["decimal"].default)
        if s.get("thousands") is not None and s.get("thousands") == decimal:
            problems.append((f"{key}.thousands", f"the thousands separator {_show(s['thousands'])} must differ "
                             f"from the decimal mark {_show(decimal)}"))
    if (sources or need_orders) and not any(s.get("kind") == "orders" for s in sources):
        problems.append(("sources", "a run needs at least one source of kind 'orders'"))
    ab = raw.get("ab_tests") if isinstance(raw.get("ab_tests"), dict) else {}
    exps = ab.get("experiments") if isinstance(ab.get("experiments"), list) else []
    exp_ids = [e.get("id") if isinstance(e, dict) else None for e in exps]
    id_counts = Counter(e for e in exp_ids if isinstance(e, str))
    for i, e in enumerate(exp_ids):
        if id_counts.get(e, 0) > 1:
            problems.append((f"ab_tests.experiments[{i}].id", f"duplicate experiment id {_show(e)}"))
    run = raw.get("run") if isinstance(raw.get("run"), dict) else {}
    seg = raw.get("segmentation") if isinstance(raw.get("segmentation"), dict) else {}
    clv = seg.get("clv") if isinstance(seg.get("clv"), dict) else {}
    as_of, holdout_end = _date_or_none(run.get("as_of")), _date_or_none(clv.get("holdout_end"))
    if as_of and holdout_end and holdout_end <= as_of:
        problems.append(("segmentation.clv.holdout_end", f"must be after run.as_of ({as_of}); got {holdout_end}"))
    clusters = seg.get("clusters") if isinstance(seg.get("clusters"), dict) else {}
    k_min = clusters.get("k_min", Clusters.model_fields["k_min"].default)
    k_max = clusters.get("k_max", Clusters.model_fields["k_max"].default)
    if isinstance(k_min, int) and isinstance(k_max, int) and k_min > k_max:
        problems.append(("segmentation.clusters.k_max", f"must be at least k_min ({k_min}); got {k_max}"))
    churn = seg.get("churn") if isinstance(seg.get("churn"), dict) else {}
    th = churn.get("thresholds") if isinstance(churn.get("thresholds"), dict) else {}
    high = th.get("high", ChurnThresholds.model_fields["high"].default)
    medium = th.get("medium", ChurnThresholds.model_fields["medium"].default)
    if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (high, medium)) and high > medium:
        problems.append(("segmentation.churn.thresholds.high", f"must not exceed medium ({medium}); got {high}"))


def _date_or_none(v: Any) -> str | None:
    try:
        return _check_date(v)
    except ValueError:
        return None


# -- validation entry points ------------------------------------------------------------------------
def _validate(raw: Any, *, path: str | Path, context: dict, need_orders: bool,
              lines: dict[str, int] | None = None, early: list | None = None) -> Params:
    problems: list[tuple[str, str]] = list(early or [])
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(path, problems + [("<top>", f"expected a YAML mapping, got {_typename(raw)}")], lines)
    model = None
    try:
        model = Params.model_validate(raw, context=context)
    except ValidationError as exc:
        problems += _problems_from(exc)
    _cross_checks(raw, problems, need_orders=need_orders)
    if problems or model is None:
        where = _lines_for(problems, lines or {})
        problems.sort(key=lambda p: where.get(p[0], 0))  # file order reads best; stable otherwise
        raise ParamsError(path, problems, where)
    return model


def validate_params(raw: Any, base_dir: str | Path, *, path: str | Path = "<params>",
                    lines: dict[str, int] | None = None) -> dict:
    """Validate a parsed params mapping; return it with every default filled and paths absolute.

    Parameters
    ----------
    raw : mapping
        The parsed YAML.
    base_dir : str or Path
        Folder that relative paths resolve against (the params file's folder).
    path : str or Path
        Name of the file, for messages.
    lines : dict, optional
        Key path -> line in the file (from :func:`load_params`), for messages.

    Raises
    ------
    ParamsError
        Listing every problem found, each with its key path (and line, when known).
    """
    model = _validate(raw, path=path, context={"base": Path(base_dir).resolve(), "check_files": True},
                      need_orders=True, lines=lines)
    params = model.model_dump()
    if not params["run"]["name"]:
        params["run"]["name"] = Path(str(path)).stem
    return params


def complete_params(partial: dict | None = None) -> dict:
    """``partial`` with every default filled in from :class:`Params` (the nested plain dict).

    For code and tests that need settings rather than a run: sources may be absent, and source files
    are not opened. Relative paths resolve against the working directory.

    Raises
    ------
    ParamsError
        When ``partial`` has unknown keys or values of the wrong type.
    """
    model = _validate(copy.deepcopy(partial or {}), path="<params>",
                      context={"base": Path.cwd(), "check_files": False}, need_orders=False)
    return model.model_dump()


def complete_source(partial: dict) -> dict:
    """One ``sources[]`` entry with every default filled in from :class:`Source` (a plain dict).

    For code and tests that read a single file outside a run: the file is not opened, a relative path
    resolves against the working directory, and a null ``format`` is told from the file extension as
    :func:`load_params` does.

    Raises
    ------
    ParamsError
        When ``partial`` lacks ``name``, ``kind`` or ``path``, has unknown keys or values of the wrong type.
    """
    try:
        model = Params.model_validate({"sources": [copy.deepcopy(partial)]},
                                      context={"base": Path.cwd(), "check_files": False})
    except ValidationError as exc:
        raise ParamsError("<source>", _problems_from(exc)) from None
    return model.sources[0].model_dump()


def effective_delimiter(source: dict) -> str:
    """The field delimiter of a validated csv/tsv source: ``delimiter``, or for null the one its format
    implies (tab for tsv, ',' otherwise), as ``sources[].delimiter`` documents."""
    return source["delimiter"] or ("\t" if source["format"] == "tsv" else ",")


def experiment_defaults(experiment_id: str) -> dict:
    """The ``ab_tests.experiments[]`` entry of an experiment the params do not list: every key at the
    schema's default (:class:`Experiment`), e.g. for an experiment found only in the assignment log."""
    return Experiment(id=experiment_id).model_dump()


_DEFAULTS: dict | None = None


def schema_default(dotted: str) -> Any:
    """The schema's default of a key, e.g. ``schema_default("ingest.identity.match_threshold")``; a key of
    every ``sources[]`` entry is ``"sources.<key>"``, e.g. ``schema_default("sources.decimal")``."""
    head, _, rest = dotted.partition(".")
    if head == "sources" and rest:
        return copy.deepcopy(Source.model_fields[rest].get_default(call_default_factory=True))
    global _DEFAULTS
    if _DEFAULTS is None:
        _DEFAULTS = complete_params()
    node: Any = _DEFAULTS
    for part in dotted.split("."):
        node = node[part]
    return copy.deepcopy(node)


def public_params(params: dict) -> dict:
    """A deep copy of validated params that is safe to publish (e.g. in ``manifest.json``).

    ``privacy.salt`` is replaced by None and ``privacy.salt_source`` records where the run's salt came
    from: ``"env"`` (the CRM_PII_SALT environment variable, which wins), ``"params"`` or ``"default"``.
    """
    out = copy.deepcopy(params)
    privacy = out.setdefault("privacy", {})
    if os.environ.get("CRM_PII_SALT"):
        source = "env"
    elif privacy.get("salt"):
        source = "params"
    else:
        source = "default"
    privacy["salt"] = None
    privacy["salt_source"] = source
    return out


# -- reading the YAML file --------------------------------------------------------------------------
class _AnchorRefused(yaml.YAMLError):
    def __init__(self, mark: Any, what: str) -> None:
        super().__init__(what)
        self.problem_mark, self.problem = mark, what


class _Loader(yaml.SafeLoader):
    """Safe YAML that refuses anchors and aliases and keeps dates as text (the schema checks them)."""

    def compose_node(self, parent, index):  # noqa: D102 - PyYAML hook
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _AnchorRefused(event.start_mark, "YAML anchors and aliases (&name, *name, <<) are not "
                                                   "allowed in params files: write the values out")
        return super().compose_node(parent, index)


_Loader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)


def _line_map(node: yaml.Node, prefix: str, lines: dict[str, int], dups: list) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            path = f"{prefix}.{key}" if prefix else key
            line = key_node.start_mark.line + 1
            if key in seen:
                dups.append((path, f"duplicate key, again on line {line}: the later value would silently "
                                   "replace the earlier"))
            seen.add(key)
            lines.setdefault(path, line)
            _line_map(value_node, path, lines, dups)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            path = f"{prefix}[{i}]"
            lines[path] = item.start_mark.line + 1
            _line_map(item, path, lines, dups)


def _lines_for(problems: list[tuple[str, str]], lines: dict[str, int]) -> dict[str, int]:
    """The line of each problem's key, or of its nearest enclosing key (a missing key's section)."""
    out = {}
    for key, _ in problems:
        probe = key
        while probe and probe not in lines:
            shorter = re.sub(r"(\.[^.\[\]]*|\[\d+\])$", "", probe)
            probe = "" if shorter == probe else shorter
        if probe:
            out[key] = lines[probe]
    return out


def load_params(path: str | Path) -> dict:
    """Read and validate a params YAML file.

    Returns the validated dict (every default filled, paths absolute); ``params["_path"]`` holds the
    file's absolute path.

    Raises
    ------
    ParamsError
        If the file is missing, is not YAML, uses anchors or aliases, or fails validation (all
        problems listed, with key paths and lines).
    """
    path = Path(path)
    if not path.is_file():
        raise ParamsError(path, [("<file>", f"params file not found: {path.resolve()}")])
    size = path.stat().st_size
    if size > MAX_PARAMS_BYTES:
        raise ParamsError(path, [("<file>", f"the file is {size:,} bytes; a params file is at most "
                                            f"{MAX_PARAMS_BYTES:,}")])
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParamsError(path, [("<file>", f"params files must be UTF-8 ({exc.reason} at byte {exc.start})")]) \
            from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        raw = loader.construct_document(node) if node is not None else None
    except RecursionError:
        raise ParamsError(path, [("<file>", "not valid YAML for a params file: nested too deeply")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "<file>"
        problem = getattr(exc, "problem", None) or str(exc)
        prefix = "" if isinstance(exc, _AnchorRefused) else "not valid YAML: "
        raise ParamsError(path, [(where, f"{prefix}{problem}")]) from None
    finally:
        loader.dispose()
    lines: dict[str, int] = {}
    dups: list[tuple[str, str]] = []
    if node is not None:
        _line_map(node, "", lines, dups)
    model = _validate(raw, path=path, context={"base": path.parent.resolve(), "check_files": True},
                      need_orders=True, lines=lines, early=dups)
    params = model.model_dump()
    if not params["run"]["name"]:
        params["run"]["name"] = path.stem
        problem = plain_name_problem(path.stem)
        if problem:
            raise ParamsError(path, [("run.name", f"null, and the file name cannot be the run name: {problem}; "
                                                  "set run.name")], lines)
    params["_path"] = str(path.resolve())
    return params


# -- the generated reference ------------------------------------------------------------------------
def _type_label(field: Any) -> str:
    extra = field.json_schema_extra or {}
    nullable = _allows_none(field.annotation)
    if extra.get("type_name"):
        label = extra["type_name"]
    else:
        label = _annotation_label(field.annotation)
    return f"{label} or null" if nullable and not label.endswith("or null") else label


def _allows_none(annotation: Any) -> bool:
    if typing.get_origin(annotation) is Annotated:
        return _allows_none(typing.get_args(annotation)[0])
    return type(None) in typing.get_args(annotation) and typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _annotation_label(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return _annotation_label(args[0])
    if origin in (typing.Union, types.UnionType):
        parts = [_annotation_label(a) for a in args if a is not type(None)]
        return " or ".join(parts)
    if origin is Literal:
        return "choice"
    if origin is list:
        return f"list of {_annotation_label(args[0])}"
    if origin is dict:
        return f"mapping of name to {_annotation_label(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(annotation, str(annotation))


def _choices(annotation: Any) -> list:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return list(args)
    return [c for a in args for c in _choices(a)] if origin in (Annotated, typing.Union, types.UnionType) else []


def _default_text(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return ""
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        return "see description"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"`{value!r}`" if isinstance(value, (str, list, dict)) else f"`{value:g}`" if isinstance(value, float) \
        else f"`{value}`"


def _bounds(field: Any) -> str:
    words = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "min_length": "at least", "max_length": "at most"}
    out = []
    for m in field.metadata:
        for attr, word in words.items():
            v = getattr(m, attr, None)
            if v is not None:
                out.append(f"{word} {v}" + (" items" if "length" in attr else ""))
    return ", ".join(out)


def _rows(cls: type[BaseModel], prefix: str, rows: list) -> None:
    for name, field in cls.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        nested = _models_in(field.annotation)
        is_list = "list of" in _annotation_label(field.annotation)
        choices = _choices(field.annotation)
        allowed = ", ".join(f"`{c!r}`" for c in choices)
        bounds = _bounds(field)
        allowed = "; ".join(x for x in (allowed, bounds) if x)
        if nested and not is_list:
            rows.append((f"**`{key}`**", "mapping", "", "", field.description or nested[0].__doc__.split(": ", 1)[-1]))
            _rows(nested[0], key, rows)
        elif nested:
            rows.append((f"**`{key}[]`**", "list of mappings", _default_text(field), allowed, field.description or ""))
            _rows(nested[0], f"{key}[]", rows)
        else:
            rows.append((f"`{key}`", _type_label(field), _default_text(field), allowed, field.description or ""))


def params_markdown() -> str:
    """The params reference (``docs/PARAMS.md``), generated from :class:`Params`."""
    rows: list[tuple[str, ...]] = []
    _rows(Params, "", rows)
    cell = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    out = [
        "# Params reference",
        "",
        "<!-- Generated by `python -m crmlib.params --markdown > docs/PARAMS.md`; do not edit by hand. -->",
        "",
        "One YAML file describes a run (`crm run --params FILE`; check it with `crm validate --params FILE`).",
        "Every key, its type, default and allowed values are below; any other key is an error. Relative paths",
        "are relative to the params file. Dates are written `2026-06-30`. YAML anchors and aliases are not",
        "allowed. Errors name the key path and the line, e.g. `sources[1].encoding (line 14): unknown text",
        "encoding 'utf9'`.",
        "",
        "Cross-key rules: source names are unique; `id_source` names a contacts source; `columns` map to the",
        "kind's canonical columns (see CONTRACT.md); `format` can be told from the extension or is set; an",
        "`order_lines` source's `orders_source` names an orders source (required when there are several); a",
        "source's `thousands` differs from its `decimal`; a run has at least one `orders` source; experiment",
        "ids are unique; `segmentation.clv.holdout_end` is after `run.as_of`; `k_min <= k_max`;",
        "churn `high <= medium`.",
        "",
        "`run.as_of` is resolved once per run (the latest order date when null) and written to",
        "`tables/as_of.json`; a day ends at the next midnight (exclusive) in `run.timezone`.",
        "",
        "| key | type | default | allowed | description |",
        "|---|---|---|---|---|",
    ]
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    out += ["", "Source kinds and their canonical columns (required ones in bold):", ""]
    for kind, cols in CANONICAL_COLUMNS.items():
        shown = ", ".join(f"**{c}**" if c in REQUIRED_COLUMNS[kind] else c for c in cols)
        out.append(f"- `{kind}`: {shown}")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--markdown"]:
        sys.stdout.write(params_markdown())
    else:
        sys.stderr.write("usage: python -m crmlib.params --markdown\n")
        sys.exit(2)
