"""TCP_QUICKACK for storage answers: acknowledge what arrives at once.

Ceph RGW's beast frontend, as shipped (without its `tcp_nodelay=1` option), writes an
answer's head and body in two writes with Nagle's algorithm on: the body waits until the
head is acknowledged. Linux delays that acknowledgement up to 40 ms on a kept-alive
connection (its request-answer mode), so every GET or LIST with a body took 44 ms here
instead of 1.2 ms (measured against the suite's RGW; PUTs and HEADs, whose answers are one
write, do not wait). A reader on such a connection turns delayed acknowledgement off before
each answer: the kernel turns it back on by itself, so once per request or per receive.
Not Linux: nothing to do (the option does not exist)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


def quickack(sock: Any) -> None:
    """Acknowledge at once what `sock` receives next (and what it holds unacknowledged).
    `sock`: a socket, an asyncio TransportSocket or uvloop's, or None (no-op)."""
    if _QUICKACK is None or sock is None:
        return
    # Closed meanwhile, or not TCP (a Unix socket): nothing to acknowledge.
    with contextlib.suppress(OSError, AttributeError, ValueError):
        sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)


def transport_socket(transport: asyncio.BaseTransport) -> Any:
    """The socket under an asyncio (or uvloop) transport, TLS included; None if none."""
    return transport.get_extra_info("socket")
