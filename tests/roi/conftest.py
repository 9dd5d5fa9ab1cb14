"""Shared fixtures for crmlib.roi tests."""

from __future__ import annotations

import pytest

from crmlib.roi.paths import make_path_table


@pytest.fixture
def hand_paths():
    """Five journeys whose credits are computed by hand in the tests.

    1. a>b       converts, value 10, ages (7, 0) days
    2. a>a>b     converts, value 30, ages (14, 7, 0)
    3. b         converts, value 20, age (0,)
    4. a         no conversion
    5. a         converts, value 40, age (3.5,)
    """
    return make_path_table(
        [
            (["a", "b"], True, 10.0, [7.0, 0.0]),
            (["a", "a", "b"], True, 30.0, [14.0, 7.0, 0.0]),
            (["b"], True, 20.0, [0.0]),
            (["a"], False, 0.0),
            (["a"], True, 40.0, [3.5]),
        ],
        half_life_days=7.0,
    )
