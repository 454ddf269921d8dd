"""Malformed input is a 4xx, never a 500 (issue 12, item 6): hostile expiries on signed
storage URLs, integers beyond 64 bits, JSON nested hundreds of levels deep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from fixtures.inprocess import AppFactory, InProcess
from pacs_ext.core.schemas import MAX_BIGINT

HOSTILE_EXPIRIES = ["²", "①", "٣٣٣٣٣٣٣٣٣٣", "9" * 5000, "", "-1", " 1", "1e9", "0x10"]


@pytest.mark.parametrize("expires", HOSTILE_EXPIRIES)
@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT"])
async def test_local_store_refuses_malformed_expiry(
    inproc: InProcess, method: str, expires: str
) -> None:
    async with inproc.anonymous() as c:
        r = await c.request(
            method,
            "/storage/mask/1/1/0001_liver.png",
            params={"expires": expires, "signature": "00" * 32},
            content=b"x" if method == "PUT" else None,
        )
    assert r.status_code == 403, r.text
    if method != "HEAD":
        assert r.json()["error"] == "AccessDenied"


@pytest.mark.parametrize("expires", HOSTILE_EXPIRIES)
async def test_legacy_files_refuse_malformed_expiry(
    make_app: AppFactory, tmp_path: Path, expires: str
) -> None:
    legacy = tmp_path / "legacy"
    (legacy / "1" / "1").mkdir(parents=True)
    (legacy / "1" / "1" / "0001_liver.png").write_bytes(b"png")
    app: InProcess = await make_app(object_storage={"legacy_local_dir": str(legacy)})
    async with app.anonymous() as c:
        r = await c.get(
            "/legacy-storage/mask/1/1/0001_liver.png",
            params={"expires": expires, "signature": "00" * 32},
        )
    assert r.status_code == 403, r.text


@pytest.mark.parametrize(
    "params",
    [
        {"offset": 2**63},
        {"offset": 10**30},
        {"annotation_id": 2**64},
        {"annotation_id": 0},
        {"group_id": -(2**70)},
        {"group_id": 2**63},
        {"limit": 2**64},
    ],
    ids=lambda p: "&".join(f"{k}={v}"[:24] for k, v in p.items()),
)
async def test_audit_query_integers_are_bounded(inproc: InProcess, params: dict[str, int]) -> None:
    async with inproc.client("root", admin=True) as admin:
        r = await admin.get("/api/audit", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "ValidationError"


async def test_audit_accepts_the_largest_bounds(inproc: InProcess) -> None:
    params = {"offset": MAX_BIGINT, "annotation_id": MAX_BIGINT, "group_id": MAX_BIGINT}
    async with inproc.client("root", admin=True) as admin:
        r = await admin.get("/api/audit", params=params)
    assert r.status_code == 200, r.text
    assert r.json()["items"] == []


@pytest.mark.parametrize(
    "path",
    [
        "/api/annotations/{big}",
        "/api/annotations/1/mask-groups/{big}",
        "/api/annotations/1/mask-groups/1/masks/{big}",
        "/api/annotations/{neg}/mask-groups",
        "/api/annotations/1/mask-groups?offset={big}",
        "/api/annotations/1/mask-groups/1/masks?slice_index={big}",
        "/api/annotations/1/mask-groups/1/masks/1/download-url?ttl_seconds={big}",
        "/api/annotations?offset={big}",
    ],
)
async def test_huge_integers_in_paths_and_queries_are_422(
    alice_client: httpx.AsyncClient, path: str
) -> None:
    r = await alice_client.get(path.format(big=2**64, neg=-(2**70)))
    assert r.status_code == 422, r.text


def _nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


@pytest.mark.parametrize("depth", [256, 300, 500, 990, 1200, 5000])
@pytest.mark.parametrize("field", ["data", "measurement_values"])
async def test_deeply_nested_annotation_json_is_422(
    alice_client: httpx.AsyncClient, depth: int, field: str
) -> None:
    inner = _nested(depth)
    value = '{"a": ' + inner + "}" if field == "data" else "[" + inner + "]"
    body = '{"study_instance_uid": "1.2.3", "' + field + '": ' + value + "}"
    headers = {"content-type": "application/json"}
    r = await alice_client.post("/api/annotations", content=body, headers=headers)
    assert r.status_code == 422, r.text
    assert "annotation_data_max_depth" in r.json()["detail"]
    created = await alice_client.post("/api/annotations", json={"study_instance_uid": "1.2.3"})
    aid = created.json()["id"]
    r = await alice_client.patch(f"/api/annotations/{aid}", content=body, headers=headers)
    assert r.status_code == 422, r.text


def _integer_schemas(schema: dict[str, Any]) -> list[dict[str, Any]]:
    if schema.get("type") == "integer":
        return [schema]
    return [s for s in schema.get("anyOf", []) if s.get("type") == "integer"]


async def test_every_integer_parameter_in_the_openapi_schema_is_bounded(
    inproc: InProcess,
) -> None:
    async with inproc.anonymous() as c:
        spec = (await c.get("/openapi.json")).json()
    unbounded = []
    checked = 0
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for param in operation.get("parameters", []):
                for schema in _integer_schemas(param.get("schema", {})):
                    checked += 1
                    if "maximum" not in schema or "minimum" not in schema:
                        unbounded.append(f"{method.upper()} {path} {param['name']}")
    assert checked >= 20
    assert unbounded == []
