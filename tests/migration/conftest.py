from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.databases import sqlite_database
from fixtures.rgw import Rgw
from fixtures.server import ServerProcess, s3_server


@pytest.fixture(params=["local", pytest.param("rgw", marks=pytest.mark.rgw)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    """A migrated SQLite database and an empty store (local folder, or a fresh RGW bucket);
    the server is not started: tests that need the API call .start()."""
    folder = tmp_path / "target"
    with sqlite_database(folder) as url:
        if request.param == "local":
            srv = ServerProcess(data_dir=folder, database_url=url)
            srv.migrate_database()
            try:
                yield srv
            finally:
                srv.stop()
            return
        rgw: Rgw = request.getfixturevalue("rgw")
        with rgw.bucket() as bucket:
            srv = s3_server(folder, url, rgw, bucket)
            srv.migrate_database()
            try:
                yield srv
            finally:
                srv.stop()
