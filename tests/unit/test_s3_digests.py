"""Content-MD5 of server-written bodies (storage/s3/digests.py): small bodies are hashed on the
event loop, large ones in a worker thread while the loop serves other tasks."""

from __future__ import annotations

import asyncio
import base64
import hashlib

from pacs_ext.storage.s3 import digests


async def _ticks_during(body: bytes) -> tuple[int, str]:
    """How many times another task ran on the loop while `body` was hashed, and the header.
    The ticker is always ready to run: any await that yields lets it tick at least once, and
    a coroutine that never yields lets it tick not at all."""
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    header = await digests.content_md5(body)
    during = ticks - before
    done = True
    await other
    return during, header


def _expected(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


async def test_a_body_at_the_threshold_is_hashed_on_the_loop_without_yielding() -> None:
    body = b"m" * digests.ON_LOOP_MAX
    assert await _ticks_during(body) == (0, _expected(body))


async def test_a_larger_body_is_hashed_in_a_thread_while_the_loop_runs_others() -> None:
    body = b"m" * (digests.ON_LOOP_MAX + 1)
    during, header = await _ticks_during(body)
    assert during > 0
    assert header == _expected(body)


async def test_a_running_digest_fed_in_large_and_small_pieces_is_the_whole_digest() -> None:
    pieces = [b"a" * 10, b"b" * (digests.ON_LOOP_MAX * 2), b"c"]
    running = hashlib.md5()
    for piece in pieces:
        await digests.update(running, piece)
    assert running.digest() == hashlib.md5(b"".join(pieces)).digest()
