"""What the janitor decides, as pure functions of the time it runs at (no I/O): the passes in
service.py fetch rows and listings, ask these, and act on the answers."""

from __future__ import annotations

from collections.abc import Iterable, Set
from datetime import datetime, timedelta

from ..storage.base import ObjectInfo


def cutoff(now: datetime, seconds: int) -> datetime:
    """The instant before which something is old enough to act on (grace or retention)."""
    return now - timedelta(seconds=seconds)


def orphans(listed: Iterable[ObjectInfo], claimed: Set[str], cutoff: datetime) -> list[ObjectInfo]:
    """Listed objects no row claims and that were last written before the cutoff: an object
    without a modification time, or a younger one (its upload may be arriving), is kept."""
    return [
        o
        for o in listed
        if o.key not in claimed and o.last_modified is not None and o.last_modified < cutoff
    ]


def stale_upload(initiated: datetime, cutoff: datetime) -> bool:
    """A multipart upload started before the cutoff (the caller keeps one of unknown age)."""
    return initiated < cutoff
