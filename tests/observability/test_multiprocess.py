"""Two uvicorn workers: whichever answers the scrape reports the requests both of them served."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from fixtures.databases import sqlite_database
from fixtures.metrics import scrape
from fixtures.server import ServerProcess, make_token
from pacs_ext.core.multiproc import MULTIPROC_ENV, prepare_multiprocess_dir

CREATED = {"method": "POST", "route": "/api/annotations", "status": "201"}


def _create_annotation(srv: ServerProcess) -> None:
    # A new connection each time, so that the kernel may hand it to either worker.
    r = httpx.post(
        srv.url + "/api/annotations",
        json={"study_instance_uid": "1.2.3"},
        headers={"Authorization": f"Bearer {make_token('alice')}"},
        timeout=30,
    )
    assert r.status_code == 201, r.text


def _created_per_worker(folder: Path, scratch: Path) -> dict[str, float]:
    """What each worker recorded on its own, read from its counter file alone."""
    out = {}
    for db in folder.glob("counter_*.db"):
        pid = db.stem.rsplit("_", 1)[1]
        one = scratch / pid
        one.mkdir(exist_ok=True)
        shutil.copy(db, one / db.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(one))
        out[pid] = registry.get_sample_value("pacs_http_requests_total", CREATED) or 0.0
    return out


def test_two_workers_report_the_sum_of_their_counters(tmp_path: Path) -> None:
    data = tmp_path / "data"
    multiproc = data / "prometheus-multiproc"
    with sqlite_database(data) as url:
        srv = ServerProcess(data_dir=data, database_url=url, extra_env={"APP_SERVER__WORKERS": "2"})
        srv.start()
        try:
            # Until both workers have served some (bounded: the kernel spreads connections).
            sent = 0
            per_worker: dict[str, float] = {}
            while sent < 200 and sum(1 for v in per_worker.values() if v) < 2:
                for _ in range(4):
                    _create_annotation(srv)
                    sent += 1
                per_worker = _created_per_worker(multiproc, tmp_path)
            # Two workers (a third pid if uvicorn replaced a worker that missed a health check).
            assert len(per_worker) >= 2
            assert all(per_worker.values()), per_worker
            assert sum(per_worker.values()) == sent
            scrapes = [scrape(srv.url) for _ in range(8)]
        finally:
            srv.stop()

        for s in scrapes:
            assert s.value("pacs_http_requests_total", **CREATED) == sent
            assert s.value("pacs_mask_groups", status="pending") == 0
            assert s.total("pacs_build_info") == 1


def test_serve_starts_each_run_from_zero(tmp_path: Path) -> None:
    """Files of an earlier run would be summed into this one's counters: they are removed."""
    saved = os.environ.pop(MULTIPROC_ENV, None)
    try:
        folder = tmp_path / "prometheus-multiproc"
        folder.mkdir()
        (folder / "counter_4242.db").write_bytes(b"left by an earlier run")
        (folder / f"counter_{os.getpid()}.db").write_bytes(b"this process's own")
        (folder / "notes.txt").write_text("not ours")
        assert prepare_multiprocess_dir(folder) == folder
        assert os.environ[MULTIPROC_ENV] == str(folder)
        assert sorted(p.name for p in folder.iterdir()) == [
            f"counter_{os.getpid()}.db",
            "notes.txt",
        ]
        # An operator's own PROMETHEUS_MULTIPROC_DIR wins over the default folder.
        own = tmp_path / "own"
        os.environ[MULTIPROC_ENV] = str(own)
        assert prepare_multiprocess_dir(folder) == own
        assert own.is_dir()
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        if saved is not None:
            os.environ[MULTIPROC_ENV] = saved


def test_one_worker_with_an_operator_set_folder(tmp_path: Path) -> None:
    """PROMETHEUS_MULTIPROC_DIR set by the operator and a single worker: metrics still add up."""
    data = tmp_path / "data"
    folder = tmp_path / "operator-folder"
    with sqlite_database(data) as url:
        srv = ServerProcess(
            data_dir=data, database_url=url, extra_env={MULTIPROC_ENV: str(folder)}
        ).start()
        try:
            _create_annotation(srv)
            _create_annotation(srv)
            got = scrape(srv.url)
        finally:
            srv.stop()
    assert got.value("pacs_http_requests_total", **CREATED) == 2
    assert any(folder.glob("counter_*.db"))
