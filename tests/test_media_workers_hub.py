"""The media tests of tests/test_hub_media.py again, with the media on 2 worker processes
(CLOUDCOUNTER_MEDIA_WORKERS=2): the same verdicts through the worker hop. Slow tier (they
repeat the default tier's tests); tests/test_media_workers.py keeps a fast one."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Hub
from tests.test_hub_media import (  # noqa: F401 - collected here with this file's fixtures
    test_a_call_carries_media_both_ways_and_is_recorded,
    test_a_leg_closed_before_its_replacement_keeps_the_call,
    test_a_participant_can_offer_again_and_media_resumes,
    test_a_vanished_customer_ends_the_call,
    test_offer_without_vp8_is_refused_with_a_code,
    test_sequential_calls_leave_no_tasks_or_peers,
    test_unwritable_recordings_dir_keeps_the_call_and_tells_the_agent,
    test_video_that_stops_is_restarted_and_both_sides_are_told,
)

pytestmark = [pytest.mark.integration, pytest.mark.vision, pytest.mark.slow]  # ~2.5 min


@pytest.fixture
def hub_factory(hub_factory: Any) -> Any:
    async def start(**overrides: Any) -> Hub:
        return await hub_factory(**{"media_workers": 2, **overrides})
    return start


@pytest.fixture
async def hub(hub_factory: Any) -> Hub:
    return await hub_factory()


# the checks' frame tap crosses the worker hop too (decoded frames to the hub's analysis)
from tests.test_hub_vision import (  # noqa: E402,F401
    test_identity_check_in_a_call_reports_no_match_with_evidence,
    mouth_clip,
    test_liveness_passes_when_the_customer_opens_their_mouth,
)

# silent monitoring: a lead's receive-only leg on the call's worker
from tests.test_monitor_hub import (  # noqa: E402,F401
    test_a_lead_watches_a_live_call,
    test_a_lead_who_leaves_stops_watching,
)
