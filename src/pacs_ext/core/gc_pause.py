"""Keep the cyclic garbage collector's full collections short: freeze what lives as long as
the process, and pause it while a request holds a large, acyclic working set.

What start-up made (the imported libraries, the engine, the storage client's service model:
~250,000 tracked objects once a server has loaded its DICOM stack) lives as long as the
process, yet every full (generation 2) collection walked all of it with the event loop
standing still: 140-170 ms each, every few seconds during a DICOM SEG export (bench/
export_seg.py, /health max 170-200 ms). `settle_once()` moves it out of the collector's
reach (gc.freeze); objects made afterwards are collected as before.

CPython's full (generation 2) collection visits every tracked object in the process, on
whichever thread happens to allocate, holding the GIL throughout. `complete` of a
100,000-file group keeps ~400,000 such objects alive at once (declared files, the listing,
the verification, the mask rows): measured with bench/complete_large.py, full collections
during it took 0.1-0.9 s each and freed nothing, and the event loop stood still meanwhile.
Those objects hold no reference cycles (reference counting frees them when the request
ends), so the collector is paused while such a request runs and resumes when the last one
ends. Objects that other requests make meanwhile are collected then, as usual.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_settled: set[str] = set()


def settle_once(after: str) -> None:
    """Once per process and reason (start-up; a late bulk import), collect, then freeze what
    is left. Frozen objects are still freed by reference counting; only a cycle among them
    would outlive its use, which is why this runs when start-up is done, never per request
    (nor per app: tests start many)."""
    if after in _settled:
        return
    _settled.add(after)
    gc.collect()
    gc.freeze()


# Requests inside paused(), and whether the collector was on when the first one began; only
# the event loop's thread enters and leaves, so plain module state is enough.
_holders = 0
_was_enabled = False


@contextmanager
def paused() -> Iterator[None]:
    """No automatic collection inside; nested and overlapping uses resume only at the end."""
    global _holders, _was_enabled
    if _holders == 0:
        _was_enabled = gc.isenabled()
        gc.disable()
    _holders += 1
    try:
        yield
    finally:
        _holders -= 1
        if _holders == 0 and _was_enabled:
            gc.enable()
