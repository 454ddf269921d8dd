"""pacs_ext.client.expiry on a FakeClock: when the SDK renews a URL before sending it, and when
a storage refusal means "expired"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx

from pacs_ext.client.expiry import Issued, has_expired, refused_as_expired
from pacs_ext.core.clock import FakeClock
from pacs_ext.masks.schemas import UploadTarget

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RGW_EXPIRED = b"<Error><Code>AccessDenied</Code><Message></Message></Error>"


def target(expires_at: datetime) -> UploadTarget:
    return UploadTarget(
        filename="0001_liver.png",
        object_key="mask/1/1/0001_liver.png",
        url="http://storage/b/mask/1/1/0001_liver.png?X-Amz-Signature=x",
        headers={},
        expires_at=expires_at,
    )


def test_a_url_is_renewed_before_use_within_a_tenth_of_its_life_of_expiry() -> None:
    clock = FakeClock(START)
    issued = Issued(target(START + timedelta(seconds=100)), clock)
    assert issued.issued_at == START
    clock.advance(89)
    assert not issued.expiring()
    clock.advance(2)  # 9 s left: under a tenth of 100 s
    assert issued.expiring()


def test_the_margin_is_at_most_30_seconds() -> None:
    clock = FakeClock(START)
    issued = Issued(target(START + timedelta(hours=1)), clock)
    clock.advance(3600 - 31)
    assert not issued.expiring()
    clock.advance(2)
    assert issued.expiring()


def test_expiry_by_our_clock_or_by_storages_date() -> None:
    clock = FakeClock(START)
    deadline = START + timedelta(seconds=60)
    assert not has_expired(deadline, clock=clock)
    # Storage's clock (its Date header) may run ahead of ours.
    later = httpx.Response(403, headers={"date": format_datetime(deadline, usegmt=True)})
    assert has_expired(deadline, later, clock)
    clock.advance(60)
    assert has_expired(deadline, clock=clock)


def test_a_bare_access_denied_counts_as_expired_only_once_the_time_is_up() -> None:
    clock = FakeClock(START)
    deadline = START + timedelta(seconds=60)
    refusal = httpx.Response(403, content=RGW_EXPIRED)
    assert not refused_as_expired(refusal, deadline, clock)  # a permission refused, not time
    clock.advance(61)
    assert refused_as_expired(refusal, deadline, clock)
    # The local store and AWS say so in the message, whatever the clock.
    said = httpx.Response(403, json={"error": "AccessDenied", "detail": "URL expired"})
    assert refused_as_expired(said, START + timedelta(hours=2), clock)
    assert not refused_as_expired(httpx.Response(500, content=RGW_EXPIRED), deadline, clock)
