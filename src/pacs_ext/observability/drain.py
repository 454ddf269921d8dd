"""Draining: once a SIGTERM has arrived, /ready answers 503 so a load balancer stops sending
new requests here, while the requests already sent are still served (cli/serve.py)."""

from __future__ import annotations

import time


class Drain:
    """Set once, from the signal handler; read by /ready. A plain flag: both run in the one
    thread of the server's event loop."""

    __slots__ = ("since",)

    def __init__(self) -> None:
        self.since: float | None = None  # time.monotonic() of the SIGTERM

    @property
    def active(self) -> bool:
        return self.since is not None

    def begin(self) -> None:
        if self.since is None:
            self.since = time.monotonic()
