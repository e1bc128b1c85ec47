"""Integration tests run the real handlers against moto."""

from __future__ import annotations

import pytest
from moto import mock_aws


@pytest.fixture
def aws():
    with mock_aws():
        yield
