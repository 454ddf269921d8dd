"""structlog set-up: JSON lines by default, console rendering for development.

Every line, ours and the stdlib's (uvicorn, sqlalchemy), passes a redaction step last: signed
URLs lose their query string, and tokens, signatures and the configured secrets are masked.
Code should not log such things in the first place; this catches what slips through (an
exception message quoting a URL, a library's debug line).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

from .config import LoggingSettings

REDACTED = "<redacted>"

# A URL's query string (presigned URLs carry their credentials there), a JWT, the credential
# parameters of SigV4 and of the local store, and bearer tokens.
_SENSITIVE = re.compile(
    r"(?P<url>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s?#\"'<>]+)\?[^\s#\"'<>]*"
    r"|(?P<jwt>\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)"
    r"|(?P<param>\b(?:X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|signature"
    r"|access_token)=)[^&\s\"'<>]+"
    r"|(?P<bearer>\bBearer\s+)[A-Za-z0-9._~+/-]+=*",
    re.IGNORECASE,
)

# Exact values never to print (JWT secret, storage keys); see register_secrets().
_secrets: set[str] = set()
_MIN_SECRET_LENGTH = 8


def _replace(match: re.Match[str]) -> str:
    if match.group("url"):
        return f"{match.group('url')}?{REDACTED}"
    if match.group("jwt"):
        return REDACTED
    prefix = match.group("param") or match.group("bearer")
    return f"{prefix}{REDACTED}"


def redact_text(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return _SENSITIVE.sub(_replace, text)


def strip_query(url: str) -> str:
    """A URL fit for a log line: scheme, host and path, without the query (its credentials)."""
    return url.split("?", 1)[0].split("#", 1)[0]


def register_secrets(values: Iterable[str | None]) -> None:
    """Values masked wherever they would appear in a log line (short ones would mask words)."""
    _secrets.update(v for v in values if v and len(v) >= _MIN_SECRET_LENGTH)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value


def redact(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in event_dict.items():
        event_dict[key] = _redact_value(value)
    return event_dict


def configure_logging(cfg: LoggingSettings) -> None:
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer(colors=False)
        if cfg.format == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, redact, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, cfg.level)),
        # WriteLogger: a record and its newline in one write (PrintLogger makes two), so a
        # record of the stdlib handler below, from another thread, cannot land in between.
        logger_factory=structlog.WriteLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Route stdlib loggers (uvicorn, sqlalchemy) through the same processors.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact,
                renderer,
            ],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(cfg.level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # uvicorn's access log prints full URLs (query strings carry signatures): ours replaces it.
    logging.getLogger("uvicorn.access").disabled = True
