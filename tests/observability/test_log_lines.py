"""Every log record is one whole line, whichever thread writes it.

The server logs through structlog (the event loop's thread) and through stdlib logging
(uvicorn, SQLAlchemy, and aiosqlite from its own thread), both to stderr, each under a lock
of its own. A record must therefore reach the stream in one write: structlog's PrintLogger
printed the message and its newline in two, so a record from another thread could land
between them, and one line held two JSON documents (seen in CI, in test_log_scan)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import logging, sys, threading
import structlog
from pacs_ext.core.config import LoggingSettings
from pacs_ext.core.logging import configure_logging

sys.setswitchinterval(1e-6)  # switch threads as often as possible
configure_logging(LoggingSettings(level="DEBUG", format="json"))
app, driver = structlog.get_logger("app"), logging.getLogger("aiosqlite")

def from_app():
    for i in range(3000):
        app.info("app.event", i=i, padding="x" * 200)

def from_driver():
    for i in range(3000):
        driver.debug("operation %s completed", i)

threads = [threading.Thread(target=from_app), threading.Thread(target=from_driver)]
for t in threads: t.start()
for t in threads: t.join()
"""


def test_records_from_two_threads_never_share_a_line(tmp_path: Path) -> None:
    log = tmp_path / "stderr.log"
    with log.open("w") as stderr:
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT], stderr=stderr, timeout=120, check=False
        )
    assert done.returncode == 0, log.read_text()[-2000:]
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    broken = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            broken.append(line)
    assert broken == [], f"{len(broken)} of {len(lines)} lines are not one record: {broken[:2]}"
    assert len(lines) == 6000
