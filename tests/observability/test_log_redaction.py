"""The last step of every log line masks what must never be logged, whoever logs it."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
import structlog

from pacs_ext.core import logging as obs_logging
from pacs_ext.core.config import LoggingSettings
from pacs_ext.core.logging import configure_logging, redact_text, register_secrets

PRESIGNED = (
    "https://pacs-masks.s3.ap-northeast-2.amazonaws.com/mask/1/2/0001_liver.png"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20250101%2Fap-northeast-2"
    "%2Fs3%2Faws4_request&X-Amz-Date=20250101T000000Z&X-Amz-Expires=600"
    "&X-Amz-SignedHeaders=content-md5%3Bcontent-type%3Bhost&X-Amz-Signature=" + "ab" * 32
)
LOCAL = "http://127.0.0.1:8000/storage/mask/1/2/a.png?expires=1700000000&signature=" + "cd" * 32
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXZhbHVlLWhlcmU"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """configure_logging() writing into a buffer; the process's logging restored afterwards."""
    buffer = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    monkeypatch.setattr(sys, "stderr", buffer)
    secrets = set(obs_logging._secrets)
    configure_logging(LoggingSettings(format="json", level="DEBUG"))
    try:
        yield buffer
    finally:
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)
        obs_logging._secrets.clear()
        obs_logging._secrets.update(secrets)


def test_presigned_urls_lose_their_query_and_keep_their_path() -> None:
    assert redact_text(PRESIGNED) == PRESIGNED.split("?")[0] + "?<redacted>"
    assert redact_text(f"GET {LOCAL} failed") == (
        "GET http://127.0.0.1:8000/storage/mask/1/2/a.png?<redacted> failed"
    )
    query_only = "expires=1&signature=abc123&X-Amz-Credential=AKIA%2Fx&X-Amz-Signature=ff"
    assert "abc123" not in redact_text(query_only)
    assert "AKIA" not in redact_text(query_only)
    assert redact_text(f"Authorization: Bearer {JWT}") == "Authorization: Bearer <redacted>"
    assert redact_text(f"token {JWT} refused") == "token <redacted> refused"
    assert redact_text("plain words, /api/annotations/3 and a=b stay") == (
        "plain words, /api/annotations/3 and a=b stay"
    )


def test_every_line_ours_and_the_stdlib_s_is_redacted(captured: io.StringIO) -> None:
    register_secrets([SECRET, "short", None])
    log = structlog.get_logger("test")
    log.info("storage.error", url=PRESIGNED, detail={"nested": [LOCAL]}, secret=SECRET)
    try:
        raise RuntimeError(f"PUT {PRESIGNED} answered 403 with key {SECRET}")
    except RuntimeError:
        log.exception("storage.failed")
    logging.getLogger("botocore").warning("retrying %s with Bearer %s", LOCAL, JWT)
    try:
        raise ValueError(f"bad token {JWT}")
    except ValueError:
        logging.getLogger("uvicorn.error").exception("request failed")

    text = captured.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert [e["event"] for e in lines] == [
        "storage.error",
        "storage.failed",
        f"retrying {LOCAL.split('?')[0]}?<redacted> with Bearer <redacted>",
        "request failed",
    ]
    for leaked in (SECRET, JWT, "ab" * 32, "cd" * 32, "AKIAEXAMPLE", "X-Amz-Signature="):
        assert leaked not in text
    assert lines[0]["url"].startswith(
        "https://pacs-masks.s3.ap-northeast-2.amazonaws.com/mask/1/2/"
    )
    assert lines[0]["secret"] == "<redacted>"
    assert "RuntimeError" in lines[1]["exception"]
    assert "ValueError: bad token <redacted>" in lines[3]["exception"]
    # Values too short to be secrets are not masked (they would mask ordinary words).
    log.info("words", text="a short story")
    assert "a short story" in captured.getvalue()
