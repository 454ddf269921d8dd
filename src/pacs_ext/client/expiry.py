"""When a signed URL has expired, whatever the store says about it.

Stores refuse an expired URL differently: the local store and AWS answer 403 with "expired"
in the message, Ceph RGW answers 403 AccessDenied with an empty message (the same answer as
for a permission it lacks). So the message is not enough: the target's `expires_at` is
compared with our clock and with storage's own (its Date header), and a 403 AccessDenied on
a URL whose time is up counts as expired.

"Our clock" is the `Clock` the PacsClient was given (the system clock unless a test passes a
FakeClock): core/clock.py is standard library only, so the SDK shares it with the server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx

from ..core.clock import SYSTEM_CLOCK, Clock
from ..masks.schemas import UploadTarget

# The refusal codes an expired URL gets ("" when the body names none).
EXPIRED_CODES = frozenset({"AccessDenied", ""})
# A Date header has whole seconds: storage's clock may be up to this much later than it says.
DATE_RESOLUTION = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class Issued:
    """An upload target and when we received it, by `clock` (to judge how close to expiry
    it is)."""

    target: UploadTarget
    clock: Clock = SYSTEM_CLOCK
    issued_at: datetime = field(init=False)
    # Unix time from which the URL counts as expiring: a tenth of its lifetime (30 s at most)
    # before it expires. Worked out once, so that asking costs one clock read per file.
    renew_from: float = field(init=False)

    def __post_init__(self) -> None:
        now = self.clock.now()
        expires = aware(self.target.expires_at)
        margin = min(30.0, max((expires - now).total_seconds(), 0.0) / 10)
        object.__setattr__(self, "issued_at", now)
        object.__setattr__(self, "renew_from", expires.timestamp() - margin)

    def expiring(self) -> bool:
        return self.clock.time() > self.renew_from


def aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def has_expired(
    expires_at: datetime, response: httpx.Response | None = None, clock: Clock = SYSTEM_CLOCK
) -> bool:
    """Whether `expires_at` has passed by our clock, or by storage's clock when `response`
    (an answer from storage) carries a Date header."""
    deadline = aware(expires_at)
    if clock.now() >= deadline:
        return True
    stamp = _storage_time(response) if response is not None else None
    return stamp is not None and stamp + DATE_RESOLUTION > deadline


def refused_as_expired(
    response: httpx.Response, expires_at: datetime, clock: Clock = SYSTEM_CLOCK
) -> bool:
    """A storage refusal that means "this signed URL has expired": renew it and try again."""
    if response.status_code != 403:
        return False
    if "expired" in response.text.lower():
        return True
    return error_code(response) in EXPIRED_CODES and has_expired(expires_at, response, clock)


def error_code(response: httpx.Response) -> str:
    """The S3 XML <Code>, or the local store's JSON "error"; "" when there is none."""
    text = response.text
    start = text.find("<Code>")
    if start >= 0:
        end = text.find("</Code>", start)
        return text[start + len("<Code>") : end] if end > 0 else ""
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("error", "")) if isinstance(body, dict) else ""


def _storage_time(response: httpx.Response) -> datetime | None:
    value = response.headers.get("date")
    if not value:
        return None
    try:
        stamp = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return aware(stamp)
