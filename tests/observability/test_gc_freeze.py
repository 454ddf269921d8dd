"""What start-up made is frozen out of the cyclic collector's full collections (core/
gc_pause.py): walking it held the event loop 140-170 ms each time during a SEG export."""

from __future__ import annotations

import gc

import pytest

from fixtures.inprocess import AppFactory
from pacs_ext.core import gc_pause


async def test_an_app_start_freezes_what_start_up_made(make_app: AppFactory) -> None:
    gc.unfreeze()  # as a fresh process: nothing frozen (a CLI test may have frozen some)
    gc_pause._settled.discard("start-up")
    await make_app()
    frozen = gc.get_freeze_count()
    # The libraries, the engine, the storage client: far more than a request ever makes,
    # and out of every full collection's way.
    assert frozen > 50_000
    assert len(gc.get_objects(generation=2)) < frozen / 10


def test_settling_happens_once_per_process_and_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(gc_pause, "_settled", set())
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    for _ in range(3):  # tests start many apps; each would freeze its cycles for good
        gc_pause.settle_once("start-up")
    gc_pause.settle_once("dicom stack")
    assert calls == ["freeze", "freeze"]
