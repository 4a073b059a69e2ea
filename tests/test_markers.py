"""The integration marker follows what a test uses, so `make unit` never starts OpenStack."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import UnmarkedCloudUse
from xfer.dev import devcloud


def test_a_unit_test_that_starts_a_cloud_fails_naming_itself(tmp_path: Path) -> None:
    with pytest.raises(UnmarkedCloudUse, match=r"test_markers\.py::test_a_unit_test"):
        devcloud.up(tmp_path, ())


def test_a_test_using_the_cloud_fixture_is_marked_integration(
        request: pytest.FixtureRequest) -> None:
    """Collected items are marked by what they use: every item in this session that needs
    `cloud` carries the marker (none slips into `-m "not integration"`)."""
    items = request.session.items
    assert items, "collected nothing"
    unmarked = [item.nodeid for item in items
                if "cloud" in getattr(item, "fixturenames", ())
                and item.get_closest_marker("integration") is None]
    assert unmarked == []
