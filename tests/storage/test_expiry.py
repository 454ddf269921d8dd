"""Expiries: the reported expiry of a signed URL, cached per signer (no process-wide state)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pacs_ext.storage.expiry import Expiries


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_one_datetime_per_second_and_a_new_one_after() -> None:
    clock = Clock(1_000.2)
    expiries = Expiries(clock)
    first = expiries.at(60)
    assert first == datetime.fromtimestamp(1_060, UTC)
    clock.now = 1_000.9
    assert expiries.at(60) is first  # same second: reused
    clock.now = 1_001.0
    assert expiries.at(60) == datetime.fromtimestamp(1_061, UTC)


def test_two_signers_do_not_share_a_cache() -> None:
    a, b = Expiries(Clock(5_000.0)), Expiries(Clock(9_000.0))
    assert a.at(10) == datetime.fromtimestamp(5_010, UTC)
    assert b.at(10) == datetime.fromtimestamp(9_010, UTC)
    assert a.at(10) == datetime.fromtimestamp(5_010, UTC)


@pytest.mark.parametrize("ttl", [0, -1, 604_801])
def test_a_ttl_outside_sigv4_limits_is_refused(ttl: int) -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        Expiries(Clock(0.0)).at(ttl)
