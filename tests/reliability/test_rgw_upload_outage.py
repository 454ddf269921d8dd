"""Ceph's gateway killed while a client uploads, and inside complete: the client sees a clear
error, nothing is half-committed, and once the gateway is back the same complete succeeds.

(tests/e2e/test_storage_failures.py covers the gateway being down for a whole complete.)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from fixtures.factories import create_annotation, group_url, make_masks, put_all
from fixtures.objects import StoredObjects
from fixtures.rgw import Rgw
from fixtures.rgw_outage import MiB, big_spec, gateway_down, killed_at, md5_b64, put_part
from fixtures.server import ServerProcess

pytestmark = [pytest.mark.rgw, pytest.mark.postgres]


@pytest.fixture
def alice(outage_server: ServerProcess) -> Iterator[httpx.Client]:
    with outage_server.client("alice") as c:
        yield c


@pytest.fixture
def objects(outage_server: ServerProcess) -> StoredObjects:
    assert outage_server.objects is not None
    return outage_server.objects


def _put_cut_off(
    part: dict[str, Any], chunk: bytes, on_wire: threading.Event, gateway_gone: threading.Event
) -> BaseException | int:
    """PUT a part whose body is half sent when the gateway dies under it."""

    def body() -> Iterator[bytes]:
        yield chunk[:MiB]
        on_wire.set()
        gateway_gone.wait(60)
        yield chunk[MiB:]

    try:
        return httpx.put(
            part["url"], content=body(), headers=part["headers"], timeout=60
        ).status_code
    except httpx.TransportError as exc:
        return exc


def _download_md5(client: httpx.Client, base: str, mask_id: int) -> str:
    url = client.get(f"{base}/masks/{mask_id}/download-url").json()["url"]
    got = httpx.get(url, timeout=60)
    assert got.status_code == 200
    return md5_b64(got.content)


def test_gateway_killed_while_putting_then_complete_after_reupload(
    outage_server: ServerProcess, outage_rgw: Rgw, alice: httpx.Client, objects: StoredObjects
) -> None:
    masks = make_masks(6)
    volume = os.urandom(11 * MiB)  # parts of 5, 5 and 1 MiB
    annotation = create_annotation(alice)
    r = alice.post(
        f"/api/annotations/{annotation['id']}/mask-groups",
        json={"files": [m.spec() for m in masks] + [big_spec("volume.nii", volume)]},
    )
    assert r.status_code == 201, r.text
    group = r.json()
    base = group_url(annotation["id"], group["id"])
    prefix = f"mask/{annotation['id']}/{group['id']}/"
    singles = [u for u in group["uploads"] if u["upload_id"] is None]
    (big,) = [u for u in group["uploads"] if u["upload_id"]]
    assert [p["size"] for p in big["parts"]] == [5 * MiB, 5 * MiB, MiB]

    # Half the files and the first part arrive; part 2 is on the wire when radosgw dies.
    put_all(singles[:3], masks)
    put_part(big, volume, 1)
    on_wire, gateway_gone = threading.Event(), threading.Event()
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(
            _put_cut_off, big["parts"][1], volume[5 * MiB : 10 * MiB], on_wire, gateway_gone
        )
        assert on_wire.wait(60)
        with gateway_down(outage_rgw):
            gateway_gone.set()
            # What the client sees: the connection dropped mid-body, then refused.
            assert isinstance(in_flight.result(60), httpx.TransportError)
            by_name = {m.filename: m for m in masks}
            for target in singles[3:]:
                with pytest.raises(httpx.ConnectError):
                    httpx.put(
                        target["url"],
                        content=by_name[target["filename"]].body,
                        headers=target["headers"],
                    )
            r = alice.post(f"{base}/complete")
            assert r.status_code == 503, r.text
            assert r.json()["error"] == "ServiceUnavailable"
            detail = r.json()["detail"]
            assert "storage unavailable during complete" in detail
            assert f"cannot reach {outage_rgw.endpoint}" in detail
            # Nothing committed; the database side still answers.
            state = alice.get(base).json()
            assert (state["status"], state["mask_count"]) == ("pending", 0)
            assert alice.get(f"{base}/masks").json()["total"] == 0

    # Back: storage holds exactly what arrived (no partial part, no metadata.json).
    assert objects.keys(prefix) == sorted(u["object_key"] for u in singles[:3])
    assert objects.uploads(prefix) == [big["object_key"]]
    r = alice.post(f"{base}/complete")
    assert r.status_code == 409, r.text
    missing = {p["filename"]: p["reason"] for p in r.json()["missing"]}
    assert missing == {
        **{u["filename"]: "not uploaded" for u in singles[3:]},
        "volume.nii": "parts 2-3 of 3 not uploaded",
    }
    assert alice.get(base).json()["status"] == "pending"

    # The client re-sends what failed (its URLs are still valid) and the same complete works.
    put_all(singles[3:], masks)
    put_part(big, volume, 2)
    put_part(big, volume, 3)
    r = alice.post(f"{base}/complete")
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["mask_count"]) == ("complete", 7)
    assert r.json()["total_bytes"] == sum(len(m.body) for m in masks) + len(volume)
    assert len(objects.keys(prefix)) == 8  # 7 files + metadata.json
    assert objects.uploads(prefix) == []
    expected = {m.filename: m.md5 for m in masks} | {"volume.nii": md5_b64(volume)}
    items = alice.get(f"{base}/masks").json()["items"]
    assert {m["filename"]: _download_md5(alice, base, m["id"]) for m in items} == expected


def test_gateway_killed_inside_complete_after_storage_finished_the_upload(
    outage_server: ServerProcess, outage_rgw: Rgw, alice: httpx.Client, objects: StoredObjects
) -> None:
    masks = make_masks(2)
    volume = os.urandom(6 * MiB)
    annotation = create_annotation(alice)
    r = alice.post(
        f"/api/annotations/{annotation['id']}/mask-groups",
        json={"files": [m.spec() for m in masks] + [big_spec("volume.nii", volume)]},
    )
    group = r.json()
    base = group_url(annotation["id"], group["id"])
    prefix = f"mask/{annotation['id']}/{group['id']}/"
    (big,) = [u for u in group["uploads"] if u["upload_id"]]
    put_all([u for u in group["uploads"] if u["upload_id"] is None], masks)
    put_part(big, volume, 1)
    put_part(big, volume, 2)

    # Storage completes the multipart upload, then dies before the listing and metadata.json.
    with killed_at(
        outage_server, outage_rgw, "complete_multipart", lambda: alice.post(f"{base}/complete")
    ) as r:
        assert r.status_code == 503, r.text
        assert "storage unavailable during complete" in r.json()["detail"]
        state = alice.get(base).json()
        assert (state["status"], state["mask_count"]) == ("pending", 0)

    # Half-done in storage (the upload became an object), nothing in the database.
    assert objects.uploads(prefix) == []
    assert big["object_key"] in objects.keys(prefix)
    assert not objects.exists(prefix + "metadata.json")
    r = alice.post(f"{base}/complete")
    assert r.status_code == 200, r.text
    assert r.json()["mask_count"] == 3
    assert objects.exists(prefix + "metadata.json")
    items = {m["filename"]: m for m in alice.get(f"{base}/masks").json()["items"]}
    assert _download_md5(alice, base, items["volume.nii"]["id"]) == md5_b64(volume)
