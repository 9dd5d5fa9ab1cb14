import numpy as np
import pytest

from crmlib.roi.paths import collapse_repeats, decay_weights, make_path_table, measures_of, validate_path_table


def test_make_path_table_aggregates(hand_paths):
    row = hand_paths[hand_paths["path"] == ("a",)].iloc[0]
    assert (row["conversions"], row["value"], row["nulls"]) == (1.0, 40.0, 1.0)
    assert hand_paths["conversions"].sum() == 4 and hand_paths["value"].sum() == 100


def test_decay_weights_half_life():
    # ages 7 and 0 with half-life 7: raw weights 0.5 and 1 -> 1/3, 2/3
    np.testing.assert_allclose(decay_weights([7.0, 0.0], 7.0), [1 / 3, 2 / 3])


def test_collapse_repeats():
    assert collapse_repeats(["a", "a", "b", "a", "a"]) == ["a", "b", "a"]


def test_measures_include_extra_columns():
    paths = make_path_table([(["a"], True, 5.0, None, {"new_customers": 1})])
    assert measures_of(paths) == ["conversions", "value", "new_customers"]


def test_validate_rejects_negative():
    paths = make_path_table([(["a"], True, 5.0)])
    paths.loc[0, "nulls"] = -1
    with pytest.raises(ValueError):
        validate_path_table(paths)
