"""janitor/decisions.py: what is old enough to act on, what is an orphan (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pacs_ext.janitor.decisions import cutoff, orphans, stale_upload
from pacs_ext.storage.base import ObjectInfo

NOW = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)


def obj(key: str, age_seconds: float | None) -> ObjectInfo:
    when = None if age_seconds is None else NOW - timedelta(seconds=age_seconds)
    return ObjectInfo(key, 10, "0" * 32, when)


def test_the_cutoff_is_the_grace_before_now() -> None:
    assert cutoff(NOW, 3600) == NOW - timedelta(hours=1)
    assert cutoff(NOW, 0) == NOW


def test_orphans_are_unclaimed_and_older_than_the_cutoff() -> None:
    listed = [
        obj("mask/1/1/old-unclaimed.png", 7200),
        obj("mask/1/1/old-claimed.png", 7200),
        obj("mask/1/1/young-unclaimed.png", 60),
        obj("mask/1/1/undated.png", None),
        obj("mask/1/1/exactly-at-cutoff.png", 3600),
    ]
    found = orphans(listed, {"mask/1/1/old-claimed.png"}, cutoff(NOW, 3600))
    assert [o.key for o in found] == ["mask/1/1/old-unclaimed.png"]


def test_with_no_grace_every_unclaimed_dated_object_is_an_orphan() -> None:
    listed = [obj("a", 0.001), obj("b", None)]
    assert [o.key for o in orphans(listed, set(), cutoff(NOW, 0))] == ["a"]


def test_a_multipart_upload_is_stale_once_started_before_the_cutoff() -> None:
    edge = cutoff(NOW, 600)
    assert stale_upload(edge - timedelta(microseconds=1), edge)
    assert not stale_upload(edge, edge)
