"""A 5,000-customer sample (seed 42, as `make sample` writes it), generated once for the sample tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from crmlib.sample import generate_sample


@pytest.fixture(scope="session")
def sample(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sample5000")
    generate_sample(out, customers=5000, seed=42)
    return out
