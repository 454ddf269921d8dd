"""An error answer keeps the connection: a 500 or a 503 is answered, the next request on the
same keep-alive connection works, and the log has no "Exception in ASGI application" (issue 18,
item 8).

Starlette runs a handler registered for `Exception` in its outermost middleware and re-raises
after responding; uvicorn then logs the traceback and closes the connection. The faults come
from fixtures/faulty_storage.py: listing (what `complete` verifies with) raises a plain bug or
a connection reset that no storage error covers.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fixtures.factories import create_annotation, create_group, group_url, make_masks, put_all
from fixtures.faulty_storage import set_faults
from fixtures.raw_http import RawConnection
from fixtures.server import ServerProcess, make_token


@pytest.fixture
def faults_off(faulty_server: ServerProcess) -> Iterator[ServerProcess]:
    set_faults(faulty_server.data_dir)
    yield faulty_server
    set_faults(faulty_server.data_dir)


@pytest.mark.parametrize(
    ("fault", "status", "error"),
    [("bug", 500, "InternalError"), ("reset", 503, "ServiceUnavailable")],
)
def test_an_error_answer_keeps_the_connection(
    faults_off: ServerProcess, fault: str, status: int, error: str
) -> None:
    srv = faults_off
    masks = make_masks(2)
    with srv.client("alice") as alice:
        annotation = create_annotation(alice)
        group = create_group(alice, annotation["id"], masks)
        put_all(group["uploads"], masks)
    complete = f"{group_url(annotation['id'], group['id'])}/complete"
    auth = {"Authorization": f"Bearer {make_token('alice')}"}
    log_before = srv.log_path.read_bytes()

    set_faults(srv.data_dir, list=fault)
    with RawConnection("127.0.0.1", srv.port) as conn:
        failed = conn.request("POST", complete, auth)
        assert failed.status == status, failed.body
        body = failed.json()
        assert body["error"] == error
        # The answer names the request, so a user can quote it and the log line be found.
        request_id = failed.headers["x-request-id"]
        assert body["request_id"] == request_id
        set_faults(srv.data_dir)
        # Same socket: a connection closed after the error answer would fail here.
        again = conn.request("POST", complete, auth)
        assert again.status == 200, again.body
        assert again.json()["status"] == "complete"

    new_log = srv.log_path.read_bytes()[len(log_before) :].decode()
    assert "Exception in ASGI application" not in new_log
    assert request_id in new_log
