"""DICOM SEG tests: a real Orthanc (scripts/orthanc.sh) with a synthetic CT stored by STOW-RS,
and an in-process app whose dicomweb.url points at it. Every test here is `e2e` (an external
service). scripts/test.sh starts Orthanc and exports ORTHANC_DICOMWEB_URL; run alone, the
session starts its own and stops it afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from fixtures.inprocess import Apps, InProcess
from fixtures.orthanc import ct, orthanc
from pacs_ext.dicomweb import DicomwebTarget

__all__ = ["ct", "orthanc"]  # fixtures for this folder


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.e2e)
            # An in-process app (as tests/conftest.py marks its own): SQLAlchemy 2.1's
            # deprecation of Result.tuples() would otherwise be a 500.
            item.add_marker(
                pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SADeprecationWarning")
            )


@pytest.fixture(scope="module")
async def pacs_app(
    tmp_path_factory: pytest.TempPathFactory, migrated_data_dir: Path, orthanc: DicomwebTarget
) -> AsyncIterator[InProcess]:
    apps = Apps(tmp_path_factory.mktemp("seg"), migrated_data_dir)
    yield await apps.start(dicomweb={"url": orthanc.url})
    await apps.stop()


@pytest.fixture
async def alice(pacs_app: InProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with pacs_app.client("alice") as c:
        yield c
