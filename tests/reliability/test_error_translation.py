"""One error translation (issue 13, item 5): storage-neutral errors are mapped to HTTP in one
table (http/errors.py `storage_answer`), and an unexpected OSError is a 500 naming the request,
not a retryable 503 that hides a bug (a FileNotFoundError from a wrong path, for one)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import structlog

from pacs_ext.http.errors import answer, storage_answer
from pacs_ext.storage.base import (
    InvalidObjectKey,
    ObjectNotFound,
    StorageAccessDenied,
    StorageError,
    StorageUnavailable,
)
from pacs_ext.storage.errors import translate_storage_errors


@pytest.fixture
def request_id() -> Iterator[str]:
    rid = "req-test-1234"
    structlog.contextvars.bind_contextvars(request_id=rid)
    yield rid
    structlog.contextvars.unbind_contextvars("request_id")


@pytest.mark.parametrize(
    "exc",
    [FileNotFoundError(2, "No such file or directory", "/srv/x"), PermissionError(13, "denied")],
)
def test_an_unexpected_os_error_is_a_500_with_the_request_id(request_id: str, exc: OSError) -> None:
    status, body = answer(exc)
    doc = json.loads(body)
    assert status == 500
    assert doc["error"] == "InternalError"
    assert doc["request_id"] == request_id
    assert request_id in doc["detail"]


@pytest.mark.parametrize("exc", [ConnectionResetError("reset"), TimeoutError("slow")])
def test_a_dropped_or_slow_dependency_stays_a_retryable_503(request_id: str, exc: OSError) -> None:
    status, body = answer(exc)
    assert status == 503
    assert json.loads(body)["error"] == "ServiceUnavailable"


async def _raise_during(operation: str, exc: StorageError) -> StorageError:
    with pytest.raises(StorageError) as raised:
        async with translate_storage_errors(operation):
            raise exc
    return raised.value


@pytest.mark.parametrize(
    ("exc", "status", "error", "words"),
    [
        (ObjectNotFound("k"), 404, "NotFound", "object not found in storage"),
        (InvalidObjectKey("bad key"), 422, "ValidationError", "bad key"),
        (StorageAccessDenied("no"), 503, "ServiceUnavailable", "storage refused access during"),
        (StorageUnavailable("down"), 503, "ServiceUnavailable", "storage unavailable during"),
        (StorageError("odd"), 503, "ServiceUnavailable", "storage error during"),
    ],
)
async def test_storage_errors_inside_an_operation_map_once(
    exc: StorageError, status: int, error: str, words: str
) -> None:
    # The storage error passes through unchanged (no HTTP type is raised in storage/)...
    raised = await _raise_during("complete", exc)
    assert raised is exc
    # ...and the one table words it, naming the operation.
    got_status, got_error, detail = storage_answer(raised)
    assert (got_status, got_error) == (status, error)
    assert words in detail


def test_a_storage_error_outside_any_operation_keeps_its_answer() -> None:
    assert storage_answer(StorageUnavailable("down")) == (
        503,
        "StorageUnavailable",
        "object storage failed: down",
    )
