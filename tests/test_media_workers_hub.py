"""The media tests of tests/test_hub_media.py again, with the media on 2 worker processes
(CLOUDCOUNTER_MEDIA_WORKERS=2): the same verdicts through the worker hop."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Hub
from tests.test_hub_media import (  # noqa: F401 - collected here with this file's fixtures
    test_a_call_carries_media_both_ways_and_is_recorded,
    test_a_participant_can_offer_again_and_media_resumes,
    test_a_vanished_customer_ends_the_call,
    test_offer_without_vp8_is_refused_with_a_code,
    test_sequential_calls_leave_no_tasks_or_peers,
)

pytestmark = [pytest.mark.integration, pytest.mark.vision]


@pytest.fixture
async def hub(hub_factory: Any) -> Hub:
    return await hub_factory(media_workers=2)
