"""Audiences: customer_key only, consent False excluded, unknown consent kept, summary counts."""

from __future__ import annotations

import pandas as pd

from crmlib.segmentation.audiences import slugify, write_audiences


def test_write_audiences(tmp_path):
    members = pd.DataFrame(
        {
            "customer_key": ["a", "b", "c", "d"],
            "segment": ["Champions", "Can't Lose", "Champions", "Champions"],
            "churn_risk": ["low", "high", "low", "high"],
        }
    )
    consent = pd.DataFrame({"customer_key": ["a", "b", "c"], "consent_marketing": [True, False, None]})
    summary = write_audiences(tmp_path, members, ["segment", "churn_risk"], consent).set_index("audience")
    champions = pd.read_parquet(tmp_path / "audiences" / "segment__champions.parquet")
    assert list(champions.columns) == ["customer_key"]
    assert champions["customer_key"].tolist() == ["a", "c", "d"]  # c: unknown consent, d: not in customers
    cant_lose = pd.read_parquet(tmp_path / "audiences" / "segment__cant_lose.parquet")
    assert cant_lose.empty
    assert summary.loc["segment__cant_lose", "excluded_no_consent"] == 1
    assert summary.loc["churn_risk__high", "customers"] == 2 and summary.loc["churn_risk__high", "written"] == 1
    assert summary["path"].str.startswith("audiences/").all()


def test_without_consent_information(tmp_path):
    members = pd.DataFrame({"customer_key": ["a", "b"], "segment": ["New", "New"]})
    summary = write_audiences(tmp_path, members, ["segment"])
    assert summary["written"].tolist() == [2]
    assert slugify("Potential Loyalists") == "potential_loyalists"
