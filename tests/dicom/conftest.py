"""DICOM SEG tests: a real Orthanc (scripts/orthanc.sh) with a synthetic CT stored by STOW-RS,
and an in-process app whose dicomweb.url points at it. Every test here is `e2e` (an external
service). scripts/test.sh starts Orthanc and exports ORTHANC_DICOMWEB_URL; run alone, the
session starts its own and stops it afterwards."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from fixtures.dicom import Series, ct_series, shuffled
from fixtures.inprocess import Apps, InProcess
from pacs_ext.dicomweb import DicomwebTarget, store

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.e2e)
            # An in-process app (as tests/conftest.py marks its own): SQLAlchemy 2.1's
            # deprecation of Result.tuples() would otherwise be a 500.
            item.add_marker(
                pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SADeprecationWarning")
            )


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DicomwebTarget]:
    url = os.environ.get("ORTHANC_DICOMWEB_URL")
    if url:
        yield DicomwebTarget(url=url)
        return
    folder = tmp_path_factory.mktemp("orthanc")
    script = ROOT / "scripts" / "orthanc.sh"
    subprocess.run([str(script), "start", str(folder)], check=True, capture_output=True)
    try:
        env = dict(
            line.removeprefix("export ").split("=", 1)
            for line in (folder / "env.sh").read_text().splitlines()
        )
        yield DicomwebTarget(url=env["ORTHANC_DICOMWEB_URL"])
    finally:
        subprocess.run([str(script), "destroy", str(folder)], check=False, capture_output=True)


@pytest.fixture(scope="session")
def ct(orthanc: DicomwebTarget) -> Series:
    """16 axial slices of 64x64, stored in Orthanc in a shuffled order."""
    series = ct_series(slices=16, rows=64, columns=64)
    stored = store(orthanc, shuffled(series))
    assert len(stored) == 16
    return series


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
