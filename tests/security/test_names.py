"""Names with a trailing newline or control characters are refused (issue 12, item 5).

Python's `$` matches before a final newline, so `re.match(r"^...$")` accepted "x.png\\n";
object keys took control characters; a token subject with NUL was stored as an owner.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from fixtures.inprocess import InProcess
from fixtures.server import make_token
from pacs_ext.objects.keys import parse_slice_filename
from pacs_ext.storage.base import InvalidObjectKey, validate_key

MD5_EMPTY = "1B2M2Y8AsgTpgAmY7PhCfg=="


async def _annotation(c: httpx.AsyncClient) -> int:
    r = await c.post("/api/annotations", json={"study_instance_uid": "1.2.3"})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _file(**fields: Any) -> dict[str, Any]:
    return {"size": 0, "md5": MD5_EMPTY, **fields}


@pytest.mark.parametrize(
    "spec",
    [
        _file(filename="x.png\n"),
        _file(filename="x.png\r"),
        _file(filename="x\n.png"),
        _file(filename="x\x00.png"),
        _file(slice_index=1, label_name="liver\n"),
        _file(slice_index=1, label_name="li\tver"),
        _file(slice_index=1, label_name="liver", content_type="image/png\n"),
    ],
    ids=[
        "filename-nl",
        "filename-cr",
        "filename-mid-nl",
        "filename-nul",
        "label-nl",
        "label-tab",
        "content-type-nl",
    ],
)
async def test_names_with_control_characters_are_422(
    alice_client: httpx.AsyncClient, spec: dict[str, Any]
) -> None:
    aid = await _annotation(alice_client)
    r = await alice_client.post(f"/api/annotations/{aid}/mask-groups", json={"files": [spec]})
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "ValidationError"
    # Nothing was created.
    listed = await alice_client.get(f"/api/annotations/{aid}/mask-groups")
    assert listed.json()["total"] == 0


async def test_upload_urls_refuse_a_trailing_newline(alice_client: httpx.AsyncClient) -> None:
    aid = await _annotation(alice_client)
    r = await alice_client.post(
        f"/api/annotations/{aid}/mask-groups", json={"files": [_file(filename="ok.png")]}
    )
    assert r.status_code == 201, r.text
    gid = r.json()["id"]
    r = await alice_client.post(
        f"/api/annotations/{aid}/mask-groups/{gid}/upload-urls",
        json={"files": [_file(filename="more.png\n")]},
    )
    assert r.status_code == 422, r.text


@pytest.mark.parametrize("field", ["study_instance_uid", "series_instance_uid"])
async def test_dicom_uids_with_a_trailing_newline_are_422(
    alice_client: httpx.AsyncClient, field: str
) -> None:
    body = {"study_instance_uid": "1.2.3", field: "1.2.3\n"}
    r = await alice_client.post("/api/annotations", json=body)
    assert r.status_code == 422, r.text


async def test_idempotency_key_with_control_characters_is_422(
    alice_client: httpx.AsyncClient,
) -> None:
    aid = await _annotation(alice_client)
    r = await alice_client.post(
        f"/api/annotations/{aid}/mask-groups",
        json={"files": [_file(filename="a.png")]},
        headers={"Idempotency-Key": "key\t1"},
    )
    assert r.status_code == 422, r.text


@pytest.mark.parametrize(
    "key",
    [
        "mask/1/2/x.png\n",
        "mask/1/2/x\r.png",
        "mask/1/2/\x00x",
        "mask/1/2/x\x1b[31m",
        "mask/\x7f",
        "mask/\x85x",
    ],
)
def test_validate_key_refuses_control_characters(key: str) -> None:
    with pytest.raises(InvalidObjectKey):
        validate_key(key)


def test_validate_key_keeps_ordinary_keys() -> None:
    assert validate_key("mask/1/2/0001_liver.png") == "mask/1/2/0001_liver.png"
    assert validate_key("mask/1/2/ümlaut and space.png")


def test_slice_filenames_parse_ascii_digits_only() -> None:
    assert parse_slice_filename("0001_liver.png") == (1, "liver")
    assert parse_slice_filename("0001_liver.png\n") is None
    assert parse_slice_filename("²_liver.png") is None


@pytest.mark.parametrize("subject", ["ev\x00il", "line\nbreak", "tab\there", "esc\x1b[0m"])
async def test_token_subject_with_control_characters_is_refused(
    inproc: InProcess, subject: str
) -> None:
    headers = {"Authorization": f"Bearer {make_token(subject)}"}
    async with inproc.anonymous(headers=headers) as c:
        r = await c.post("/api/annotations", json={"study_instance_uid": "1.2.3"})
        assert r.status_code == 401, r.text
        assert r.json()["error"] == "Unauthorized"
    async with inproc.client("root", admin=True) as admin:
        owners = {a["owner"] for a in (await admin.get("/api/annotations")).json()["items"]}
    assert subject not in owners
