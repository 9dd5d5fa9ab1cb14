"""The run page's decision brief: findings, business KPIs, run history and how the totals relate.

Everything here is read from the run's tables (``tables/*.parquet``, ``tables/*.json``,
``warnings.jsonl``) and from the manifests of earlier runs in the same reports folder; nothing is read
from the notebooks and nothing is computed twice: the stages computed the models, the brief only
aggregates their tables and puts the result into sentences. A table that is absent leaves its finding
out (its stage failed, was skipped or had no input); a table that cannot be read leaves its finding out
with a note, so that the run page is always written.

Every sentence goes through :func:`crmlib.i18n._` and every number through :mod:`crmlib.present`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote

import pandas as pd

from crmlib.i18n import N_, _
from crmlib.present import fmt_count, fmt_label, fmt_money, fmt_percent, fmt_ratio
from crmlib.report import stage_label, write_text_atomic
from crmlib.status import read_warnings

__all__ = ["Finding", "Kpi", "Brief", "build_brief", "findings", "kpis", "reconciliation", "run_history",
           "write_kpis_json", "KPIS_FILE", "ACTIVE_DAYS", "HISTORY_RUNS", "MAX_FINDINGS"]

#: Each run folder's KPI values, written at publish time; the history of the KPI panel is read from them.
KPIS_FILE = "kpis.json"
#: "Active customers" bought within this many days up to and including the as-of date.
ACTIVE_DAYS = 90
#: Runs shown in a KPI's trend line (this run included).
HISTORY_RUNS = 12
#: Findings on the first screen.
MAX_FINDINGS = 8
#: A channel whose cost is below this share of all marketing cost is not ranked by its ROAS.
MIN_COST_SHARE = 0.01
#: "Valuable" customers: the top quarter by net spend up to the as-of date.
VALUABLE_QUANTILE = 0.75

_OK_STATUSES = ("ok", "ok_with_warnings")
# section headings of the stage pages that findings link to (more in the calls to _Run.section)
_SEGMENTS_HEADING = N_("Segments")
_VERDICTS_HEADING = N_("Verdicts")
_UNIT_WORDS = {"D": "days", "W": "weeks", "M": "months"}


@dataclass
class Finding:
    """One sentence of the brief: what the run says, what to do about it, and where the evidence is.

    ``text`` and ``action`` are plain text (escaped when rendered); ``links`` are (href, label) pairs
    relative to the run folder: the stage page section that backs the finding, audience files.
    """

    topic: str
    text: str
    action: str = ""
    links: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Kpi:
    """A business measure: its value (None when the tables cannot give it), how to write it and what it counts.

    ``kind`` is a :mod:`crmlib.present` kind (money, count, percent, ratio); ``share`` marks a fraction
    whose change is shown as "from x" rather than as a relative change; ``higher_is_better`` is None for
    a measure that is neither (marketing cost).
    """

    key: str
    label: str
    value: float | None
    kind: str
    counts: str
    share: bool = False
    higher_is_better: bool | None = True
    history: list[float] = field(default_factory=list)  # earlier successful runs, oldest first
    previous_run: str | None = None


@dataclass
class Brief:
    """What the run page shows above the stage table."""

    findings: list[Finding]
    kpis: list[Kpi]
    reconciliation: dict[str, list[tuple[str, str, list[tuple[str, str]]]]]
    notes: list[str]
    currency: str
    as_of: str | None


# -- reading the run -----------------------------------------------------------------------------------
class _Run:
    """The run folder, its manifest and lazily opened tables; an Engine only when an aggregate needs one."""

    def __init__(self, run_dir: Path, manifest: dict):
        self.dir = Path(run_dir)
        self.tables = self.dir / "tables"
        self.manifest = manifest
        run = (manifest.get("params") or {}).get("run") or {}
        self.currency = str(run.get("currency") or "")
        self._engine: Any = None
        self._as_of = self._read_as_of()

    # the as-of date and the exclusive end of that day, as every stage uses them (crmlib.asof)
    def _read_as_of(self) -> tuple[str, pd.Timestamp] | None:
        info = self.manifest.get("as_of")
        if not isinstance(info, dict) and (self.tables / "as_of.json").exists():
            try:
                info = json.loads((self.tables / "as_of.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                info = None
        if isinstance(info, dict) and info.get("as_of"):
            day = str(info["as_of"])[:10]
            try:
                return day, pd.Timestamp(day) + pd.Timedelta(days=1)
            except ValueError:
                return None
        return None

    @property
    def as_of(self) -> str | None:
        return self._as_of[0] if self._as_of else None

    @property
    def end(self) -> pd.Timestamp | None:
        return self._as_of[1] if self._as_of else None

    def has(self, name: str) -> bool:
        return (self.tables / name).exists()

    def frame(self, name: str, columns: list[str] | None = None) -> pd.DataFrame:
        return pd.read_parquet(self.tables / name, columns=columns)

    def json(self, name: str) -> Any:
        return json.loads((self.tables / name).read_text(encoding="utf-8"))

    def table(self, name: str) -> Any:
        """``tables/<name>.parquet`` as an Ibis table (row-level aggregates run in DuckDB, not pandas)."""
        if self._engine is None:
            from crmlib.engine import Engine

            self._engine = Engine(self.dir, database=":memory:", threads=1)
        return self._engine.table(name)

    def to_pandas(self, expr: Any) -> Any:
        return self._engine.to_pandas(expr)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def stage_page(self, stage: str) -> str | None:
        for s in self.manifest.get("stages") or []:
            if s.get("stage") == stage and s.get("html") and (self.dir / str(s["html"])).exists():
                return str(s["html"])
        return None

    def section(self, stage: str, *headings: str) -> list[tuple[str, str]]:
        """A link to the stage page, to the section titled by one of ``headings`` if the page has it.

        ``headings`` are English section titles marked with ``N_``, best first (the page's headings are in
        the run's language): for each in turn, the page heading equal to it in English or translated,
        else the first one containing it; without any the link goes to the top of the page.
        """
        page = self.stage_page(stage)
        if page is None:
            return []
        href = page
        try:
            text = (self.dir / page).read_text(encoding="utf-8", errors="replace")
            ids = re.findall(r"<h[1-4][^>]*\sid=\"([^\"]+)\"", text)
        except OSError:
            ids = []

        def plain(title: str) -> str:  # nbconvert's anchors: the heading, spaces as "-", URL-quoted
            return unquote(title).replace("-", " ").strip().casefold()

        for heading in headings:
            wanted = [plain(t) for t in dict.fromkeys((_(heading), heading))]
            hit = (next((i for w in wanted for i in ids if plain(i) == w), None)
                   or next((i for w in wanted for i in ids if w in plain(i)), None))
            if hit:
                href = f"{page}#{hit}"
                break
        label = {"ingest": _("Ingest page"), "segmentation": _("Segmentation page"), "roi": _("ROI page"),
                 "ab_tests": _("A/B tests page")}.get(stage, stage)
        return [(href, label)]


def _num(x: Any) -> float | None:
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _names(items: list[str]) -> str:
    return _(", ").join(str(i) for i in items)


#: Full-width sentence marks: Chinese sets the next sentence right after them, without a space.
_FULL_WIDTH_END = tuple("。；：！？）」』")


def _sentences(*parts: str) -> str:
    """Sentences as one paragraph: a space after an English sentence, none after a Chinese one."""
    text = ""
    for part in (p for p in parts if p):
        text += ("" if not text or text.endswith(_FULL_WIDTH_END) else " ") + part
    return text


# -- findings ------------------------------------------------------------------------------------------
def _segments(run: _Run) -> list[Finding]:
    if not run.has("rfm.parquet"):
        return []
    rfm = run.table("rfm")
    per = run.to_pandas(rfm.group_by("segment").agg(customers=rfm.count(), revenue=rfm.monetary.sum()))
    per = per[per["segment"].notna()].sort_values("revenue", ascending=False, kind="mergesort")
    total_c, total_r = float(per["customers"].sum()), float(per["revenue"].sum())
    if per.empty or total_r <= 0:
        return []
    top = per.iloc[0]
    text = _("{segment} ({n} customers, {share_c} of buyers) bring {share_r} of net revenue up to {as_of} "
             "({money}).").format(segment=fmt_label(top["segment"]), n=fmt_count(top["customers"]),
                                  share_c=fmt_percent(top["customers"] / total_c),
                                  share_r=fmt_percent(top["revenue"] / total_r),
                                  as_of=run.as_of or _("the as-of date"), money=fmt_money(top["revenue"], run.currency))
    if len(per) >= 3:
        top3 = per.head(3)
        text = _sentences(text, _("The top three segments ({names}) bring {share}.").format(
            names=_names([fmt_label(s) for s in top3["segment"]]), share=fmt_percent(top3["revenue"].sum() / total_r)))
    links = run.section("segmentation", _SEGMENTS_HEADING, "RFM")
    audience = _audience_file(run, "segment", str(top["segment"]))
    if audience:
        links.append(audience)
    return [Finding("segments", text, _("Keep {segment} in loyalty and early-access campaigns; they carry the "
                                        "revenue.").format(segment=fmt_label(top["segment"])), links)]


def _audience_file(run: _Run, kind: str, value: str) -> tuple[str, str] | None:
    """The CSV under ``audiences/`` for one segment or churn tier, from ``audiences.parquet``."""
    if not run.has("audiences.parquet"):
        return None
    aud = run.frame("audiences.parquet")
    row = aud[(aud["kind"] == kind) & (aud["value"].astype(str) == value)]
    if row.empty:
        return None
    csv = Path(str(row.iloc[0]["path"])).with_suffix(".csv").as_posix()
    # only a file the stage wrote under audiences/ is linked, whatever the table says
    if not csv.startswith("audiences/") or ".." in Path(csv).parts or not (run.dir / csv).is_file():
        return None
    return csv, _("{file} ({n} with marketing consent)").format(file=csv, n=fmt_count(row.iloc[0]["written"]))


def _churn_thresholds(run: _Run) -> dict:
    seg = (run.manifest.get("params") or {}).get("segmentation") or {}
    th = ((seg.get("churn") or {}).get("thresholds")) or {}
    return {k: _num(v) for k, v in th.items()}


def _churn(run: _Run) -> list[Finding]:
    if not run.has("clv.parquet"):
        return []
    clv = run.table("clv")
    cut = _num(run.to_pandas(clv.revenue.quantile(VALUABLE_QUANTILE)))
    if cut is None:
        return []
    valuable = clv.filter(clv.revenue >= cut)
    at_risk = valuable.filter(valuable.churn_risk.isin(["high", "medium"]))
    agg = run.to_pandas(at_risk.agg(n=at_risk.count(), revenue=at_risk.revenue.sum(),
                                    lapsed=(1 - at_risk.p_alive).sum()))
    n_valuable = int(run.to_pandas(valuable.count()))
    n = int(agg["n"].iloc[0])
    if n_valuable == 0:
        return []
    medium = _churn_thresholds(run).get("medium")
    rule = (_("P(alive) below {t}").format(t=fmt_percent(medium)) if medium is not None
            else _("high or medium churn-risk tier"))
    text = _("{n} of the {total} most valuable customers (top quarter by net spend) are at churn risk "
             "({rule}); they spent {money} up to {as_of}, and the model expects about {lapsed} of them have "
             "already stopped buying.").format(
        n=fmt_count(n), total=fmt_count(n_valuable), rule=rule, money=fmt_money(agg["revenue"].iloc[0], run.currency),
        as_of=run.as_of or _("the as-of date"), lapsed=fmt_count(agg["lapsed"].iloc[0]))
    links = run.section("segmentation", N_("Churn risk"))
    action = _("Send a win-back offer to the at-risk customers this week, most valuable first.")
    warning_list = run.dir / "audiences" / "churn_warning.csv"
    if (run.dir / "audiences" / "churn_warning.parquet").exists() and warning_list.exists():
        size = len(pd.read_parquet(run.dir / "audiences" / "churn_warning.parquet", columns=["customer_key"]))
        action = _("Send a win-back offer this week: audiences/churn_warning.csv lists the {n} most valuable "
                   "at-risk customers.").format(n=fmt_count(size))
        links.append(("audiences/churn_warning.csv", "audiences/churn_warning.csv"))
    high = _audience_file(run, "churn_risk", "high")
    if high:
        links.append(high)
    return [Finding("churn", text, action, links)]


def _roi_channels(run: _Run) -> pd.DataFrame | None:
    """Channel-level ROI rows of ``roi.parquet``: ROAS range across attribution models and cost."""
    if not run.has("roi.parquet"):
        return None
    roi = run.frame("roi.parquet", columns=["model", "channel", "cost", "revenue", "roas", "level"])
    roi = roi[roi["level"] == "channel"] if "level" in roi.columns else roi
    if roi.empty:
        return None
    per = roi.groupby("channel").agg(cost=("cost", "max"), roas_min=("roas", "min"), roas_max=("roas", "max"),
                                     models=("model", "nunique"))
    return per.reset_index()


def _channels(run: _Run) -> list[Finding]:
    out: list[Finding] = []
    links = run.section("roi", N_("ROI by channel"))
    mmm = run.frame("mmm.parquet") if run.has("mmm.parquet") else None
    per = _roi_channels(run)
    # measured by the media-mix model (causal, with an interval): the stronger evidence, stated first
    if mmm is not None and len(mmm):
        ident = mmm[mmm["identified"].astype(bool) & mmm["roas_low"].notna()]
        pay = ident[ident["roas_low"] > 1].sort_values("roas", ascending=False)
        lose = ident[ident["roas_high"] < 1]
        parts = [_("{channel} returns {roas} per 1 spent (95% interval {low} to {high})").format(
            channel=r["channel"], roas=fmt_ratio(r["roas"]), low=fmt_ratio(r["roas_low"]),
            high=fmt_ratio(r["roas_high"]))
            for _i, r in pay.iterrows()]
        if parts:
            out.append(Finding("channels_mmm", _("Measured by the media-mix model: {parts}.").format(
                parts=_("; ").join(parts)), _("Keep or raise the budget of {names}.").format(
                names=_names(list(pay["channel"]))), links))
        if len(lose):
            out.append(Finding("channels_mmm_loss", _("The media-mix model shows {names} returning less than "
                                                      "they cost (ROAS interval below 1).").format(
                names=_names(list(lose["channel"]))), _("Cut or rework {names}.").format(
                names=_names(list(lose["channel"]))), links))
    if per is not None and not out:
        total = float(per["cost"].sum())
        big = per[(per["cost"] > 0) & (per["cost"] >= MIN_COST_SHARE * total) & per["roas_min"].notna()]
        small = per[(per["cost"] > 0) & (per["cost"] < MIN_COST_SHARE * total)]
        pay = big[big["roas_min"] > 1].sort_values("roas_min", ascending=False)
        lose = big[big["roas_max"] < 1]
        models = int(per["models"].max())
        if len(pay) or len(lose):
            parts = [_("{channel} (ROAS {low} to {high})").format(channel=r["channel"], low=fmt_ratio(r["roas_min"]),
                                                                  high=fmt_ratio(r["roas_max"]))
                     for _i, r in pay.iterrows()]
            text = (_("Under all {k} attribution models, {parts} return more than they cost.").format(
                k=models, parts=_names(parts)) if parts else "")
            if len(lose):
                text = _sentences(text, _("{names} return less than they cost under every model.").format(
                    names=_names(list(lose["channel"]))))
            if len(small):
                text = _sentences(text, _("{names} cost under {share} of the spend, so their ROAS does not rank "
                                          "them.").format(names=_names(list(small["channel"])),
                                                          share=fmt_percent(MIN_COST_SHARE)))
            text = _sentences(text, _("Attribution credits touches; it does not prove the sales would be lost "
                                      "without them."))
            out.append(Finding("channels", text, _("Keep these budgets for now; move money between channels only "
                                                   "on the test below."), links))
    return out


def _unranked(run: _Run) -> list[Finding]:
    if not run.has("mmm.parquet"):
        return []
    mmm = run.frame("mmm.parquet")
    modelled = mmm[~mmm["reason"].fillna("").astype(str).str.startswith("not modelled")] \
        if "reason" in mmm.columns else mmm
    unknown = modelled[~modelled["identified"].astype(bool)].sort_values("spend", ascending=False)
    if unknown.empty:
        return []
    total = float(mmm["spend"].sum())
    spend = float(unknown["spend"].sum())
    biggest = unknown.iloc[0]
    text = _("The media-mix model cannot rank {names} from this data: their return intervals are too wide or "
             "include zero. That is {money} of spend ({share} of the total).").format(
        names=_names(list(unknown["channel"])), money=fmt_money(spend, run.currency),
        share=fmt_percent(spend / total) if total > 0 else "")
    action = _("Settle it with a holdout experiment: pause {channel} ({money} spent) for a random part of the "
               "audience or of the regions for four weeks and compare sales.").format(
        channel=biggest["channel"], money=fmt_money(biggest["spend"], run.currency))
    return [Finding("unranked", text, action, run.section("roi", N_("Media-mix model"), N_("Budget reallocation")))]


def _verdicts(run: _Run) -> pd.DataFrame | None:
    """One row per experiment: the A/B stage's verdict table when it wrote one, else the primary-metric rows
    of ``ab_results.parquet`` (verdict, lift and the interval the verdict uses)."""
    for name in ("ab_verdicts.parquet", "verdicts.parquet"):
        if run.has(name):
            table = run.frame(name)
            if {"experiment_id", "verdict"} <= set(table.columns):
                return table
    if not run.has("ab_results.parquet"):
        return None
    res = run.frame("ab_results.parquet")
    treat = res[~res["is_control"].astype(bool)] if "is_control" in res.columns else res
    if "role" in treat.columns:
        treat = treat[treat["role"] == "primary"]
    treat = treat.sort_values("rel_lift", ascending=False, kind="mergesort").drop_duplicates("experiment_id")
    mapping = {"better": "ship", "worse": "do not ship"}
    out = treat.rename(columns={"metric": "primary_metric"}).copy()
    out["verdict"] = out["verdict"].map(lambda v: mapping.get(str(v), str(v)))
    return out.reset_index(drop=True)


def _interval(row: pd.Series) -> str:
    low, high = row.get("seq_rel_ci_low"), row.get("seq_rel_ci_high")
    if _num(low) is not None and _num(high) is not None:
        return _("always-valid interval {low} to {high}").format(low=fmt_percent(low, signed=True),
                                                                 high=fmt_percent(high, signed=True))
    low, high = row.get("rel_ci_low"), row.get("rel_ci_high")
    if _num(low) is not None and _num(high) is not None:
        return _("fixed-horizon interval {low} to {high}").format(low=fmt_percent(low, signed=True),
                                                                  high=fmt_percent(high, signed=True))
    return ""


def _lift(row: pd.Series) -> str:
    """``conversion +74.4%, always-valid interval +3.6% to +10.4%`` (empty when there is no lift)."""
    lift = _num(row.get("rel_lift"))
    if lift is None:
        return ""
    metric = row.get("primary_metric") or row.get("metric") or ""
    interval = _interval(row)
    if interval:
        return _("{metric} {lift}, {interval}").format(metric=metric, lift=fmt_percent(lift, signed=True),
                                                      interval=interval).strip()
    return _("{metric} {lift}").format(metric=metric, lift=fmt_percent(lift, signed=True)).strip()


def _keep_or_stop(open_: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Inconclusive experiments to keep running and to stop, as the A/B stage advised in ``ab_verdicts``:
    its ``action`` column (``keep running`` / ``stop``), or - in a table without it - its users per arm
    still needed, which the stage fills in only for the experiments worth running on. Empty lists when
    the table holds neither column (the brief then gives the general advice)."""
    if "action" in open_.columns:
        action = open_["action"].astype(str)
        keep_rows, stop_rows = open_[action == "keep running"], open_[action == "stop"]
    elif "n_more_per_arm" in open_.columns:
        more = pd.to_numeric(open_["n_more_per_arm"], errors="coerce")
        keep_rows, stop_rows = open_[more.notna()], open_[more.isna()]
    else:
        return [], []
    return [str(e) for e in keep_rows["experiment_id"]], [str(e) for e in stop_rows["experiment_id"]]


def _experiments(run: _Run) -> list[Finding]:
    table = _verdicts(run)
    if table is None or table.empty:
        return []
    links = run.section("ab_tests", _VERDICTS_HEADING)
    out: list[Finding] = []
    verdict = table["verdict"].astype(str)
    ship = table[verdict == "ship"]
    if len(ship):
        parts = [_("ship {experiment} ({lift}); no guardrail harmed").format(experiment=r["experiment_id"],
                                                                             lift=_lift(r))
                 for _i, r in ship.iterrows()]
        out.append(Finding("ab_ship", _("Experiments with a winner: {parts}.").format(parts=_("; ").join(parts)),
                           _("Roll out the winning variant of {names}.").format(
                               names=_names(list(ship["experiment_id"]))),
                           links))
    stop = table[verdict == "do not ship"]
    if len(stop):
        parts = [_("{experiment}: {reason}").format(experiment=r["experiment_id"],
                                                    reason=str(r.get("reason") or _lift(r)))
                 for _i, r in stop.iterrows()]
        out.append(Finding("ab_stop", _("Do not ship {names}. {parts}.").format(
            names=_names(list(stop["experiment_id"])), parts=_("; ").join(parts)),
            _("Stop these experiments and keep the current version."), links))
    open_ = table[verdict == "inconclusive"]
    if len(open_):
        parts = []
        for _i, r in open_.iterrows():
            step = str(r.get("next_step") or "") if pd.notna(r.get("next_step")) else ""
            more = _num(r.get("n_more_per_arm"))
            if not step and more is not None:
                step = _("keep running: about {n} more users per arm are needed").format(n=fmt_count(more))
            if not step:
                step = _("no clear result yet")
            lift = _lift(r)
            parts.append(_("{experiment} ({lift}): {step}").format(experiment=r["experiment_id"], lift=lift, step=step)
                         if lift else _("{experiment}: {step}").format(experiment=r["experiment_id"], step=step))
        keep, stop_now = _keep_or_stop(open_)
        if keep or stop_now:
            action = _sentences(_("Keep running {names}.").format(names=_names(keep)) if keep else "",
                                _("Stop {names}: treat the change as having no effect.").format(
                                    names=_names(stop_now)) if stop_now else "")
        else:
            action = _("Keep running the experiments that can still be settled; stop the others.")
        out.append(Finding("ab_open", _("No winner yet in {n} experiment(s). {parts}.").format(
            n=fmt_count(len(open_)), parts=_("; ").join(parts)), action, links))
    blocked = table[verdict.str.startswith("blocked")]
    if len(blocked):
        out.append(Finding("ab_blocked", _("{names}: the traffic split differs from the design (sample-ratio "
                                           "mismatch), so no effect estimate can be trusted.").format(
            names=_names(list(blocked["experiment_id"]))),
            _("Fix the assignment or the logging, then restart the experiment."),
            run.section("ab_tests", N_("Sample-ratio check"), _VERDICTS_HEADING)))
    return out


def _health(run: _Run) -> list[Finding]:
    stages = run.manifest.get("stages") or []
    failed = [stage_label(s["stage"]) for s in stages if s.get("status") == "failed"]
    skipped = [stage_label(s["stage"]) for s in stages if s.get("status") == "skipped"
               and not str(s.get("reason") or "").startswith("not selected")]
    reused = [stage_label(s["stage"]) for s in stages if s.get("status") == "skipped"
              and str(s.get("reason") or "").startswith("not selected")]
    warnings = read_warnings(run.dir)
    quarantine = None
    quality = run.manifest.get("data_quality")
    if isinstance(quality, dict) and quality:
        read = sum(int(s.get("rows_read") or 0) for s in quality.values() if isinstance(s, dict))
        held = sum(int(s.get("rows_quarantined") or 0) for s in quality.values() if isinstance(s, dict))
        if read:
            quarantine = _("{n} of {total} input rows ({share}) were set aside as unreadable.").format(
                n=fmt_count(held), total=fmt_count(read), share=fmt_percent(held / read))
    parts = []
    if failed:
        parts.append(_("Stage(s) {names} failed: their findings are missing.").format(names=_names(failed)))
    if skipped:
        parts.append(_("Stage(s) {names} did not run: their findings are missing.").format(names=_names(skipped)))
    if reused and run.manifest.get("based_on"):
        parts.append(_("Stage(s) {names} were not selected: their findings come from the tables of run {run}.").format(
            names=_names(reused), run=run.manifest["based_on"]))
    if warnings:
        # step names are English codes (N_) until shown
        steps = [_("{step} ({stage})").format(step=_(str(w.get("step") or "")), stage=stage_label(w.get("stage")))
                 for w in warnings]
        parts.append(_("{n} model step(s) could not be computed on this data: {steps}.").format(
            n=fmt_count(len(warnings)), steps=_names(steps)))
    if not parts:
        parts.append(_("Every stage ran and every model step was computed."))
    elif not (failed or skipped or warnings):
        parts.insert(0, _("Every model step was computed."))
    if quarantine:
        parts.append(quarantine)
    if failed:
        action = _("Fix the failed stage (its error is below) and run again before acting on the other findings.")
    elif warnings:
        action = _("Read the warnings below before acting on the other findings.")
    elif skipped:
        action = _("See below why the stages did not run; add the missing inputs to get their findings.")
    else:
        action = _("Nothing to fix in the data this week.")
    return [Finding("health", _sentences(*parts), action, [("#stages", _("Stages and warnings"))])]


_FINDERS: list[tuple[str, tuple[str, ...], Callable[[_Run], list[Finding]]]] = [
    ("segments", ("rfm.parquet", "audiences.parquet"), _segments),
    ("churn", ("clv.parquet", "audiences.parquet"), _churn),
    ("channels", ("mmm.parquet", "roi.parquet"), _channels),
    ("unranked", ("mmm.parquet",), _unranked),
    ("experiments", ("ab_verdicts.parquet", "ab_results.parquet"), _experiments),
    ("health", ("warnings.jsonl",), _health),
]


def _unreadable(run: _Run, tables: tuple[str, ...]) -> list[str]:
    """The tables among ``tables`` that exist but cannot be opened (all present ones when each opens:
    then the content, not the file, was the problem)."""
    import pyarrow.dataset as ds

    present = [t for t in tables if run.has(t)]
    broken = []
    for name in present:
        try:
            if name.endswith(".parquet"):
                ds.dataset(run.tables / name, format="parquet").schema  # a file, or Spark's folder of parts
        except Exception:  # noqa: BLE001 - any failure to open is what we are looking for
            broken.append(name)
    return broken or present


def findings(run_dir: str | Path, manifest: dict) -> tuple[list[Finding], list[str]]:
    """The brief's findings (at most :data:`MAX_FINDINGS`) and notes on the findings left out.

    A finding whose table is absent is left out silently (the stage table says why); one whose table
    cannot be read is left out with a note naming the table.
    """
    run = _Run(Path(run_dir), manifest)
    try:
        return _findings(run)
    finally:
        run.close()


def _findings(run: _Run) -> tuple[list[Finding], list[str]]:
    out: list[Finding] = []
    notes: list[str] = []
    for topic, tables, make in _FINDERS:
        try:
            out.extend(make(run))
        except Exception:  # noqa: BLE001 - a broken table must never stop the run page from being written
            topics = {"segments": _("segments"), "churn": _("churn risk"), "channels": _("channel return"),
                      "unranked": _("media-mix"), "experiments": _("experiments"), "health": _("run health")}
            notes.append(_("The {topic} finding is left out: {tables} could not be read.").format(
                topic=topics.get(topic, topic),
                tables=_names([f"tables/{t}" for t in _unreadable(run, tables)]) or _("its table")))
    # the health finding always closes the list, even when the others fill it
    health = [f for f in out if f.topic == "health"]
    rest = [f for f in out if f.topic != "health"][: MAX_FINDINGS - len(health)]
    return rest + health, notes


# -- KPIs ----------------------------------------------------------------------------------------------
def _order_figures(run: _Run) -> dict[str, float]:
    """Counts and sums of ``orders.parquet``: all rows, purchases and refunds, up to the as-of date."""
    if not run.has("orders.parquet"):
        return {}
    import ibis

    o = run.table("orders")
    end = run.end
    inside = (o.order_ts < end) if end is not None else ibis.literal(True)
    purchase, refund = o.amount > 0, o.amount < 0
    agg = run.to_pandas(o.agg(
        rows=o.count(),
        purchases=purchase.sum(), refunds=refund.sum(),
        purchases_in=(purchase & inside).sum(), refunds_in=(refund & inside).sum(),
        gross_in=o.amount.sum(where=purchase & inside), refund_value_in=o.amount.sum(where=refund & inside),
    )).iloc[0]
    fig = {k: float(v) if pd.notna(v) else 0.0 for k, v in agg.items()}
    fig["refund_value_in"] = -fig["refund_value_in"]
    fig["net_in"] = fig["gross_in"] - fig["refund_value_in"]
    buys = o.filter(purchase & inside)
    per = buys.group_by("customer_key").agg(n=buys.count(), last=buys.order_ts.max())
    cust = run.to_pandas(per.agg(buyers=per.count(), repeat=(per.n >= 2).sum(),
                                 active=(per["last"] >= end - pd.Timedelta(days=ACTIVE_DAYS)).sum()
                                 if end is not None else per.count())).iloc[0]
    fig.update({k: float(v) if pd.notna(v) else 0.0 for k, v in cust.items()})
    return fig


def kpis(run_dir: str | Path, manifest: dict) -> tuple[list[Kpi], dict[str, float], list[str]]:
    """The business KPIs of this run (values only, no history), the order figures they came from, and notes."""
    run = _Run(Path(run_dir), manifest)
    try:
        return _kpis(run)
    finally:
        run.close()


def _kpis(run: _Run) -> tuple[list[Kpi], dict[str, float], list[str]]:
    notes: list[str] = []
    as_of = run.as_of or _("the as-of date")

    def safe(what: str, make: Callable[[], Any], default: Any) -> Any:
        try:
            return make()
        except Exception:  # noqa: BLE001 - see findings(): the page is written whatever the tables hold
            notes.append(_("Some KPIs are left out: {table} could not be read.").format(table=what))
            return default

    orders = safe("tables/orders.parquet", lambda: _order_figures(run), {})
    clv = safe("tables/clv.parquet", lambda: _clv_figures(run), {})
    roi = safe("tables/roi.parquet", lambda: _roi_figures(run), {})
    buyers = orders.get("buyers")
    window_start = (run.end - pd.Timedelta(days=ACTIVE_DAYS)).date().isoformat() if run.end is not None else ""
    medium = _churn_thresholds(run).get("medium")

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    horizon = clv.get("horizon_text", "")
    out = [
        Kpi("customers", _("customers"), buyers, "count", _("bought at least once up to {as_of}").format(as_of=as_of)),
        Kpi("active_customers", _("active customers"), orders.get("active"), "count",
            _("bought in the last {days} days ({start} to {as_of})").format(days=ACTIVE_DAYS, start=window_start,
                                                                           as_of=as_of)),
        Kpi("repeat_rate", _("repeat-purchase rate"), ratio(orders.get("repeat"), buyers), "percent",
            _("of customers bought two or more times"), share=True),
        Kpi("revenue", _("revenue"), orders.get("net_in"), "money",
            _("net of refunds, all orders up to {as_of}").format(as_of=as_of)),
        Kpi("aov", _("average order value"), ratio(orders.get("gross_in"), orders.get("purchases_in")), "money",
            _("per purchase, before refunds")),
        Kpi("mean_clv", _("mean CLV"), clv.get("mean_clv"), "money",
            _("expected value per customer over the next {horizon}").format(horizon=horizon)),
        Kpi("churn_share", _("share at churn risk"), clv.get("churn_share"), "percent",
            (_("of customers with P(alive) below {t}").format(t=fmt_percent(medium)) if medium is not None
             else _("of customers in the high or medium churn tier")), share=True, higher_is_better=False),
        Kpi("marketing_cost", _("marketing cost"), roi.get("cost"), "money",
            _("all channels, up to {as_of}").format(as_of=as_of), higher_is_better=None),
        Kpi("blended_roas", _("blended ROAS"), ratio(roi.get("revenue"), roi.get("cost")), "ratio",
            _("revenue of orders with a marketing touch per 1 of cost")),
        Kpi("cac", _("CAC"), ratio(roi.get("cost"), roi.get("new_customers")), "money",
            _("marketing cost per new customer with a marketing touch"), higher_is_better=False),
    ]
    return out, orders, notes


def _clv_figures(run: _Run) -> dict[str, Any]:
    if not run.has("clv.parquet"):
        return {}
    clv = run.table("clv")
    agg = run.to_pandas(clv.agg(n=clv.count(), mean_clv=clv.clv.mean(),
                                risk=clv.churn_risk.isin(["high", "medium"]).sum())).iloc[0]
    out: dict[str, Any] = {"mean_clv": _num(agg["mean_clv"]),
                           "churn_share": float(agg["risk"]) / float(agg["n"]) if agg["n"] else None}
    horizon_text = _("year")
    if run.has("clv_model.json"):
        model = run.json("clv_model.json")
        horizon, unit = _num(model.get("horizon")), str(model.get("time_unit") or "")
        if horizon is not None and unit in _UNIT_WORDS:
            horizon_text = {"D": _("{n} days"), "W": _("{n} weeks"), "M": _("{n} months")}[unit].format(
                n=fmt_count(horizon))
    out["horizon_text"] = horizon_text
    return out


def _roi_figures(run: _Run) -> dict[str, float]:
    """Marketing cost, revenue of touched orders and new customers, from one model's channel rows of
    ``roi.parquet`` (every model distributes the same touched orders, so the totals do not depend on it)."""
    if not run.has("roi.parquet"):
        return {}
    roi = run.frame("roi.parquet", columns=["model", "channel", "cost", "revenue", "new_customers", "level"])
    roi = roi[roi["level"] == "channel"]
    if roi.empty:
        return {}
    model = sorted(roi["model"].astype(str).unique())[0]
    one = roi[roi["model"].astype(str) == model]
    return {"cost": float(one["cost"].sum()), "revenue": float(one["revenue"].sum()),
            "new_customers": float(one["new_customers"].sum())}


# -- history -------------------------------------------------------------------------------------------
def write_kpis_json(run_dir: str | Path, manifest: dict, values: list[Kpi]) -> Path:
    """Write ``run_dir/kpis.json``: this run's KPI values, read back as history by later runs."""
    path = Path(run_dir) / KPIS_FILE
    data = {"run_id": manifest.get("run_id"), "run_name": manifest.get("run_name"),
            "started": manifest.get("started"), "as_of": (manifest.get("as_of") or {}).get("as_of")
            if isinstance(manifest.get("as_of"), dict) else None,
            "currency": ((manifest.get("params") or {}).get("run") or {}).get("currency"),
            "kpis": {k.key: k.value for k in values}}
    return write_text_atomic(path, json.dumps(data, indent=1, ensure_ascii=False))


def run_history(output_dir: str | Path, manifest: dict, limit: int = HISTORY_RUNS - 1) -> list[dict]:
    """Earlier successful runs of the same params name that wrote ``kpis.json``, oldest first (at most ``limit``).

    Read from the run folders of ``output_dir`` only: each folder's ``manifest.json`` (name, status,
    start time) and ``kpis.json``. Hidden folders (runs being built) are skipped.
    """
    output_dir = Path(output_dir)
    name, started, run_id = manifest.get("run_name"), str(manifest.get("started") or ""), manifest.get("run_id")
    runs = []
    try:
        folders = [p for p in output_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return []
    for folder in folders:
        try:
            m = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
            k = json.loads((folder / KPIS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (not isinstance(m, dict) or not isinstance(k, dict) or m.get("run_name") != name
                or m.get("status") not in _OK_STATUSES or m.get("run_id") == run_id
                or str(m.get("started") or "") >= started or not isinstance(k.get("kpis"), dict)):
            continue
        runs.append({"run_id": m.get("run_id", folder.name), "folder": folder.name,
                     "started": str(m.get("started") or ""), "currency": k.get("currency"), "kpis": k["kpis"]})
    runs.sort(key=lambda r: (r["started"], r["folder"]))
    return runs[-limit:] if limit > 0 else []


def _with_history(values: list[Kpi], history: list[dict], currency: str) -> list[Kpi]:
    for kpi in values:
        points = [r for r in history if kpi.kind != "money" or r.get("currency") == currency]
        kpi.history = [v for v in (_num(r["kpis"].get(kpi.key)) for r in points) if v is not None]
        usable = [r for r in points if _num(r["kpis"].get(kpi.key)) is not None]
        kpi.previous_run = usable[-1]["run_id"] if usable else None
    return values


# -- reconciliation ------------------------------------------------------------------------------------
def reconciliation(run: _Run, orders: dict[str, float]) -> dict[str, list[tuple[str, str, list[tuple[str, str]]]]]:
    """How the order and revenue totals of the pages relate: rows (label, formatted number, pages using it)."""
    if not orders:
        return {}
    as_of = run.as_of or _("the as-of date")
    journeys = {}
    if run.has("roi_journeys.json"):
        try:
            journeys = run.json("roi_journeys.json")
        except (OSError, ValueError):
            journeys = {}
    summary = journeys.get("summary") or {}
    lookback = _num((journeys.get("conventions") or {}).get("lookback_days"))
    ingest = run.section("ingest", N_("Orders and revenue per month by channel"), N_("One customer per person"))
    seg = run.section("segmentation", _SEGMENTS_HEADING, "RFM")
    roi = run.section("roi", N_("Customer journeys"))
    zero = orders["rows"] - orders["purchases"] - orders["refunds"]
    rows_o = [(_("order rows loaded (purchases and refunds)"), fmt_count(orders["rows"]), ingest),
              (_("minus refund rows"), fmt_count(orders["refunds"]), [])]
    if zero:
        rows_o.append((_("minus rows with a zero amount"), fmt_count(zero), []))
    rows_o += [(_("purchase orders, all dates"), fmt_count(orders["purchases"]), []),
               (_("minus purchases after {as_of}").format(as_of=as_of),
                fmt_count(orders["purchases"] - orders["purchases_in"]), []),
               (_("purchase orders up to {as_of}").format(as_of=as_of), fmt_count(orders["purchases_in"]),
                seg + roi)]
    conversions = _num(summary.get("conversions"))
    if conversions is not None and round(conversions) != round(orders["purchases_in"]):
        rows_o.append((_("purchase orders in the ROI period (the ROI page's conversions)"), fmt_count(conversions),
                       roi))
    touched = _num(summary.get("touched_conversions"))
    if touched is not None:
        label = (_("of which with a marketing touch in the {days} days before (attributed to channels)").format(
            days=fmt_count(lookback)) if lookback is not None else _("of which with a marketing touch (attributed)"))
        rows_o.append((label, fmt_count(touched), roi))
    c = run.currency
    rows_r = [(_("gross sales of purchases up to {as_of}").format(as_of=as_of), fmt_money(orders["gross_in"], c), roi),
              (_("minus refunds up to {as_of}").format(as_of=as_of), fmt_money(orders["refund_value_in"], c), []),
              (_("net revenue up to {as_of}").format(as_of=as_of), fmt_money(orders["net_in"], c), seg)]
    value = _num(summary.get("conversion_value"))
    if value is not None and abs(value - orders["gross_in"]) > 0.5:
        rows_r.append((_("gross sales in the ROI period (the ROI page's conversion value)"), fmt_money(value, c), roi))
    touched_value = _num(summary.get("touched_value"))
    if touched_value is not None:
        rows_r.append((_("of which orders with a marketing touch (attributed revenue)"),
                       fmt_money(touched_value, c), roi))
    return {"orders": rows_o, "revenue": rows_r}


# -- everything at once --------------------------------------------------------------------------------
def build_brief(run_dir: str | Path, manifest: dict, *, history_dir: str | Path | None = None) -> Brief:
    """Findings, KPIs with history, the totals' reconciliation and notes for the run page; writes ``kpis.json``.

    Parameters
    ----------
    run_dir : path
        The run folder (``tables/`` inside it).
    manifest : dict
        The run's manifest (stages, statuses, params, as-of).
    history_dir : path, optional
        The reports folder holding earlier runs (default: the run folder's parent).
    """
    run_dir = Path(run_dir)
    run = _Run(run_dir, manifest)
    notes: list[str] = []
    try:
        found, more = _findings(run)
        notes += more
        values, orders, more = _kpis(run)
        notes += more
        try:
            recon = reconciliation(run, orders)
        except Exception:  # noqa: BLE001 - the page is written whatever the tables hold
            recon = {}
            notes.append(_("The totals table is left out: tables/orders.parquet could not be read."))
    finally:
        run.close()
    try:
        write_kpis_json(run_dir, manifest, values)
    except OSError:
        raise  # a refused write is the operator's problem to see (disk full): the runner reports it
    history = run_history(history_dir if history_dir is not None else run_dir.parent, manifest)
    return Brief(found, _with_history(values, history, run.currency), recon, notes, run.currency, run.as_of)
