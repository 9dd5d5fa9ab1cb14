"""Audience files: one Parquet per segment / risk tier holding ``customer_key`` only.

Customers whose ``consent_marketing`` is False are excluded; unknown consent (null, or no customers
table) is kept, since the contract only asks to drop customers *without* consent when it is known.
Files go to ``run_dir/audiences/<kind>__<slug>.parquet`` (e.g. ``segment__champions.parquet``,
``churn_risk__high.parquet``), each with a CSV of the same name beside it for upload to marketing tools
(``customer_key`` and the list's value, e.g. ``segment``; no PII), written by
:func:`crmlib.report.write_people_csv` so that no cell can run as a spreadsheet formula.
A value whose slug is empty or already taken (Chinese names, names differing only in punctuation)
gets a short hash of the exact value appended, so two lists never share a file.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pandas as pd

from crmlib.report import write_people_csv

__all__ = ["slugify", "write_audiences"]


def slugify(name: str) -> str:
    """File-safe lower-case name: "Can't Lose" -> "cant_lose"."""
    text = re.sub(r"[^0-9a-zA-Z]+", "_", str(name).replace("'", "")).strip("_").lower()
    return text or "unnamed"


def _unique_slug(value: object, taken: set[str]) -> str:
    """:func:`slugify` of ``value``, with a short hash of the exact value when that slug is empty or taken."""
    slug = slugify(value)
    if slug == "unnamed" or slug in taken:
        slug = f"{slug}_{hashlib.sha256(str(value).encode('utf-8')).hexdigest()[:8]}"
    taken.add(slug)
    return slug


def write_audiences(
    run_dir: str | Path,
    memberships: pd.DataFrame,
    groupings: list[str],
    consent: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Write one audience file per value of each grouping column and return the summary table.

    Parameters
    ----------
    run_dir : path
        Run directory; files are written under ``run_dir/audiences/``.
    memberships : DataFrame
        ``customer_key`` plus the grouping columns (e.g. ``segment``, ``churn_risk``).
    groupings : list of str
        Columns to split by.
    consent : DataFrame, optional
        ``customer_key, consent_marketing`` (e.g. from the customers table).

    Returns
    -------
    DataFrame with ``audience, kind, value, customers, excluded_no_consent, written, path``:
    ``customers`` members before the consent filter, ``written`` rows in the file.
    """
    out_dir = Path(run_dir) / "audiences"
    out_dir.mkdir(parents=True, exist_ok=True)
    members = memberships.copy()
    if consent is not None and "consent_marketing" in consent.columns:
        flags = consent[["customer_key", "consent_marketing"]].drop_duplicates("customer_key")
        members = members.merge(flags, on="customer_key", how="left")
        members["_opted_out"] = members["consent_marketing"].eq(False).fillna(False).astype(bool)
    else:
        members["_opted_out"] = False
    rows = []
    for kind in groupings:
        taken: set[str] = set()
        for value, group in members.groupby(kind, sort=True):
            name = f"{kind}__{_unique_slug(value, taken)}"
            path = out_dir / f"{name}.parquet"
            keep = group.loc[~group["_opted_out"], ["customer_key"]].astype({"customer_key": "string"})
            keep = keep.sort_values("customer_key")
            keep.to_parquet(path, index=False)
            write_people_csv(keep.assign(**{kind: str(value)}), path.with_suffix(".csv"))
            rows.append(
                {
                    "audience": name,
                    "kind": kind,
                    "value": str(value),
                    "customers": len(group),
                    "excluded_no_consent": int(group["_opted_out"].sum()),
                    "written": len(keep),
                    "path": str(path.relative_to(Path(run_dir))),
                }
            )
    return pd.DataFrame(rows)
