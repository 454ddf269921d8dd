"""pacs_ext.core.clock: the fake clock tests advance instead of sleeping."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from pacs_ext.core.clock import SYSTEM_CLOCK, FakeClock


def test_the_fake_clock_moves_only_when_advanced() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    clock = FakeClock(start)
    assert clock.now() == start
    assert clock.time() == start.timestamp()
    clock.advance(90.5)
    assert clock.now() == start + timedelta(seconds=90.5)
    assert clock.time() == start.timestamp() + 90.5
    clock.set(start)
    assert clock.now() == start


def test_the_fake_clock_is_utc_and_refuses_naive_times() -> None:
    plus_two = datetime(2026, 1, 1, 2, tzinfo=timezone(timedelta(hours=2)))
    assert FakeClock(plus_two).now().tzinfo is UTC
    with pytest.raises(ValueError, match="timezone-aware"):
        FakeClock(datetime(2026, 1, 1))


def test_the_system_clock_is_the_machines() -> None:
    before = time.time()
    assert before <= SYSTEM_CLOCK.time() <= time.time()
    assert SYSTEM_CLOCK.now().tzinfo is UTC
