"""Experiments: A/B and holdout assignments, the orders treatments cause, the assignment log."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from ._common import DAY, SOURCE_FILES, _EPOCH_END, _EPOCH_START, _fmt_ts, _write_csv
from .orders import _spend_amount

EXPERIMENTS: list[dict] = [
    {"id": "aa_homepage_banner", "start": "2026-01-12", "weights": {"control": 0.5, "treatment": 0.5},
     "observed_treatment_share": 0.5, "rel_lift": 0.0, "unit_share": 0.7,
     "kind": "A/A (null): no effect"},
    {"id": "checkout_redesign", "start": "2026-03-02", "weights": {"control": 0.5, "treatment": 0.5},
     "observed_treatment_share": 0.5, "rel_lift": 0.30, "unit_share": 1.0,
     "kind": "real lift on conversion (and revenue through the extra orders)"},
    {"id": "free_shipping_threshold", "start": "2026-04-13",
     "weights": {"control": 0.5, "treatment": 0.5}, "observed_treatment_share": 0.53,
     "rel_lift": 0.0, "unit_share": 1.0,
     "kind": "broken split: 50/50 design, 53/47 observed (control assignments lost by a logging bug)"},
    {"id": "email_520_holdout", "start": "2026-05-11", "weights": {"control": 0.2, "treatment": 0.8},
     "observed_treatment_share": 0.8, "rel_lift": 0.30, "unit_share": 1.0,
     "holdout": {"channel": "email", "campaign_id": "EM_520_2026"},
     "kind": "marketing holdout: treatment receives campaign EM_520_2026 (email), control is held out"},
]
EXPERIMENT_ASSIGN_DAYS = 7
EXPERIMENT_WINDOW_DAYS = 14


# ----------------------------------------------------------------------------- experiments
def _run_experiments(rec: dict, purch: dict, o_person: np.ndarray, o_ts: np.ndarray,
                     rng: np.random.Generator) -> dict:
    """Assign units, then add the orders the treatment causes (conversion lift within the window)."""
    eshop_of = rec["eshop_of"]
    signup_of = np.full(len(eshop_of), np.iinfo(np.int64).max)
    ok = eshop_of >= 0
    signup_of[ok] = rec["signup"][eshop_of[ok]]
    # one sorted int64 key (person, time) answers "any order in the window" by binary search
    key = np.sort((o_person.astype(np.int64) << 32) + (o_ts - _EPOCH_START))
    assignments, added, info = [], [], []
    for e in EXPERIMENTS:
        start = int(np.datetime64(e["start"], "s").astype(np.int64))
        eligible = np.flatnonzero(ok & (signup_of < start))
        units = eligible[rng.random(len(eligible)) < e["unit_share"]]
        units = units[rng.permutation(len(units))]
        n_u = len(units)
        n_treat = int(round(e["observed_treatment_share"] * n_u))
        treat = np.zeros(n_u, dtype=bool)
        treat[:n_treat] = True
        treat = treat[rng.permutation(n_u)]
        a_ts = start + rng.integers(0, EXPERIMENT_ASSIGN_DAYS * DAY, n_u)
        w_end = a_ts + EXPERIMENT_WINDOW_DAYS * DAY
        # baseline: any order of the person inside [assigned, assigned + window)
        k_lo = np.searchsorted(key, (units.astype(np.int64) << 32) + (a_ts - _EPOCH_START))
        k_hi = np.searchsorted(key, (units.astype(np.int64) << 32) + (w_end - _EPOCH_START))
        base_conv = k_hi > k_lo
        p0 = float(base_conv.mean()) if n_u else 0.0
        q = p0 * e["rel_lift"] / (1 - p0) if p0 < 1 else 0.0
        gets = treat & ~base_conv & (rng.random(n_u) < q)
        add_ts = a_ts[gets] + rng.integers(600, EXPERIMENT_WINDOW_DAYS * DAY, gets.sum())
        add_ts = np.minimum(add_ts, _EPOCH_END - 60)
        add_amount = _spend_amount(purch["nu"][units[gets]], rng)
        added.append((units[gets], add_ts, add_amount, e["id"]))
        assignments.append((e["id"], units, treat, a_ts))
        info.append({
            "experiment_id": e["id"], "kind": e["kind"], "design_weights": e["weights"],
            "observed_treatment_share_target": e["observed_treatment_share"],
            "n_control": int((~treat).sum()), "n_treatment": int(treat.sum()),
            "metric": f"converted: any order (either channel, any source of the person) in "
                      f"[assigned_ts, assigned_ts + {EXPERIMENT_WINDOW_DAYS} days)",
            "true_rel_lift_conversion": e["rel_lift"],
            "baseline_conversion_rate_before_lift": p0,
            "true_abs_lift_conversion": p0 * e["rel_lift"],
            "added_orders": int(gets.sum()),
            "added_revenue_per_treatment_unit": float(add_amount.sum() / max(treat.sum(), 1)),
            "true_revenue_lift_per_unit_definition": "expected extra revenue per treatment unit = "
            "true_abs_lift_conversion x mean order amount of the treated; realised value above",
            "srm_expected": e["observed_treatment_share"] != e["weights"]["treatment"],
            **({"holdout": e["holdout"]} if "holdout" in e else {}),
        })
    return {"assignments": assignments, "added": added, "info": info}


def _write_experiments(out: Path, rec: dict, exp: dict, rng: np.random.Generator,
                       paths: dict, rows: dict) -> None:
    eid, unit, treat, ats = [], [], [], []
    for e_id, units, tr, a_ts in exp["assignments"]:
        eid.append(np.full(len(units), e_id, dtype=object))
        unit.append(units)
        treat.append(tr)
        ats.append(a_ts)
    eid, unit, treat, ats = (np.concatenate(x) for x in (eid, unit, treat, ats))
    # logging repeats: exact duplicate assignment rows (same unit, same arm, same time)
    dup = np.flatnonzero(rng.random(len(eid)) < 0.003)
    sel = np.r_[np.arange(len(eid)), dup]
    sel = sel[np.argsort(ats[sel], kind="stable")]
    tbl = pa.table({
        "experiment_id": pa.array(eid[sel], pa.string()),
        "source_customer_id": rec["sid_pa"].take(pa.array(rec["eshop_of"][unit[sel]])),
        "variant": pa.array(np.where(treat[sel], "treatment", "control"), pa.string()),
        "assigned_ts": _fmt_ts(ats[sel], "%Y-%m-%d %H:%M:%S"),
        "is_control": pa.array(~treat[sel]),
    })
    paths["experiments"] = out / SOURCE_FILES["experiments"]
    _write_csv(tbl, paths["experiments"])
    rows["experiments"] = len(sel)
    exp["duplicate_rows"] = int(len(dup))
