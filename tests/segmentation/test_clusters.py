"""Clusters: recovers planted groups, seeded reproducibility, plain-word profiles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crmlib.segmentation import clusters
from crmlib.segmentation.clusters import describe_profile, fit_clusters, rfm_feature_matrix, translated_profile


def _planted(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    groups = [
        # recent, frequent, high spend
        dict(recency=5, frequency=30, monetary=5000),
        # lapsed, infrequent, low spend
        dict(recency=600, frequency=1, monetary=30),
        # mid
        dict(recency=90, frequency=5, monetary=400),
    ]
    rows = []
    for g, spec in enumerate(groups):
        n = 300
        rows.append(
            pd.DataFrame(
                {
                    "recency_days": np.round(spec["recency"] * np.exp(rng.normal(0, 0.15, n))).astype(int),
                    "frequency": np.maximum(1, np.round(spec["frequency"] * np.exp(rng.normal(0, 0.15, n)))).astype(
                        int
                    ),
                    "monetary": spec["monetary"] * np.exp(rng.normal(0, 0.15, n)),
                    "truth": g,
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def test_recovers_planted_groups_and_describes_them():
    data = _planted()
    result = fit_clusters(data, k=None, k_min=2, k_max=6, seed=0)
    assert result.k == 3 and result.chosen_by == "best silhouette"
    assert list(result.scan["k"]) == [2, 3, 4, 5, 6]
    # Each planted group maps to exactly one cluster.
    crosstab = pd.crosstab(data["truth"], result.labels)
    assert (crosstab.gt(0).sum(axis=1) == 1).all()
    profiles = result.profiles.set_index("cluster")
    assert profiles.loc[0, "profile"] == "recent, frequent, high spend"  # cluster 0 = highest mean spend
    assert profiles.loc[2, "profile"] == "lapsed, infrequent, low spend"
    assert profiles["customers"].sum() == len(data)


def test_seeded_and_given_k():
    data = _planted(1)
    a = fit_clusters(data, k=4, k_min=2, k_max=4, seed=3)
    b = fit_clusters(data, k=4, k_min=2, k_max=4, seed=3)
    assert a.k == 4 and a.chosen_by == "parameter"
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.scan["inertia"].is_monotonic_decreasing


def test_feature_matrix_standardised_with_negative_monetary():
    data = pd.DataFrame({"recency_days": [0, 10, 100], "frequency": [1, 2, 3], "monetary": [-50.0, 10.0, 1000.0]})
    x, mean, _ = rfm_feature_matrix(data)
    np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(x.std(axis=0), 1, atol=1e-12)
    assert mean[2] == np.mean([-np.log1p(50), np.log1p(10), np.log1p(1000)])


def test_describe_profile_thresholds():
    assert describe_profile(0.0, 0.0, 0.0) == "moderately recent, average frequency, average spend"
    assert describe_profile(1.0, -1.0, 0.6) == "lapsed, infrequent, high spend"


@pytest.fixture
def kmeans_fits(monkeypatch):
    """(rows, k) of every K-means fit, in order."""
    fits = []
    real = clusters._kmeans
    monkeypatch.setattr(clusters, "_kmeans", lambda x, k, seed: fits.append((x.shape[0], k)) or real(x, k, seed))
    return fits


def test_chosen_k_reuses_the_scan_fit(kmeans_fits):
    result = fit_clusters(_planted(2), k=None, k_min=2, k_max=5, seed=0)
    assert kmeans_fits == [(900, 2), (900, 3), (900, 4), (900, 5)]  # no second fit of the chosen k
    assert result.scan.attrs["rows"] == 900 and "scanned on" not in repr(result)


def test_scan_on_a_sample_still_finds_k_and_labels_everyone(kmeans_fits):
    data = _planted(3)
    result = fit_clusters(data, k=None, k_min=2, k_max=5, seed=0, scan_sample=240)
    assert kmeans_fits == [(240, 2), (240, 3), (240, 4), (240, 5), (900, 3)]  # the chosen k is fitted on all rows
    assert result.k == 3 and result.scan.attrs["rows"] == 240
    assert "k scanned on 240" in repr(result)
    assert result.labels.size == len(data)
    crosstab = pd.crosstab(data["truth"], result.labels)
    assert (crosstab.gt(0).sum(axis=1) == 1).all()
    # the sample is seeded: the same scan again
    again = fit_clusters(data, k=None, k_min=2, k_max=5, seed=0, scan_sample=240)
    pd.testing.assert_frame_equal(result.scan, again.scan)


def test_profiles_are_stored_in_english_and_shown_in_the_report_language(zh_cn):
    # the stored words stay English whatever the run's language (clusters.parquet is a data product)
    assert describe_profile(-1.0, 1.0, 1.0) == "recent, frequent, high spend"
    assert translated_profile(-1.0, 1.0, 1.0) == "近期购买、购买频繁、消费高"
    assert translated_profile(1.0, 0.0, -1.0) == "久未购买、购买频率一般、消费低"


def test_silhouettes_of_several_labelings_equal_sklearns():
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(11)
    x = np.vstack([rng.normal(centre, 1.0, (900, 3)) for centre in (0.0, 6.0, 12.0)])
    labelings = {k: clusters._kmeans(x, k, seed=0).labels_ for k in (2, 3, 5)}
    labelings["one point alone"] = np.r_[np.zeros(len(x) - 1, dtype=int), 1]  # its silhouette is 0, as in sklearn
    for sample_size in (len(x), 1_000):  # all points, then sklearn's seeded sample of them
        ours = clusters.silhouette_scores(x, labelings, sample_size=sample_size, seed=4)
        for key, labels in labelings.items():
            if sample_size < len(x) and key == "one point alone":
                continue  # the sample may miss the lone point, and sklearn then refuses one label
            expected = silhouette_score(x, labels, sample_size=sample_size if sample_size < len(x) else None,
                                        random_state=4)
            assert ours[key] == pytest.approx(expected, abs=1e-12), key
    assert ours[3] > ours[5] and ours[3] > ours[2]  # the planted three groups score best
