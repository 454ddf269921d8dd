"""When to retry a request, and how long to wait before the next attempt."""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx

# Statuses that mean "not done, try again": the server or a proxy in front of it is busy/down.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# For requests that are not safe to repeat (creating things), only statuses that promise the
# request was not acted upon.
RETRYABLE_UNSAFE_STATUSES = frozenset({429, 503})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n waits up to base * factor**(n-1)."""

    attempts: int = 5
    base_delay: float = 0.5
    factor: float = 2.0
    max_delay: float = 10.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        ceiling = min(self.max_delay, self.base_delay * self.factor ** max(attempt - 1, 0))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security


def retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return float(value) if value else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def is_retryable_exception(exc: BaseException, *, safe: bool) -> bool:
    """Transport failures: any for safe requests; only "never connected" for unsafe ones."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return True
    return safe and isinstance(exc, httpx.TransportError)
