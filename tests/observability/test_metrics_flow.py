"""/metrics over a whole upload flow: every counter moves by exactly what the flow did."""

from __future__ import annotations

import httpx

from fixtures.factories import create_annotation, create_group, group_url, make_masks, put_all
from fixtures.metrics import delta, scrape
from fixtures.server import ServerProcess
from pacs_ext import __version__

GROUPS = "/api/annotations/{annotation_id}/mask-groups"
GROUP = GROUPS + "/{group_id}"
MASK = GROUP + "/masks/{mask_id}"
STORAGE = "/storage/{key:path}"


def _groups(server: ServerProcess, status: str) -> float:
    return scrape(server.url).value("pacs_mask_groups", status=status)


def test_full_flow_moves_every_counter_by_what_it_did(
    server: ServerProcess, alice: httpx.Client
) -> None:
    masks = make_masks(3, size=3000)
    # The first annotation, group and mask on a new database reserve blocks of ids in the
    # bucket's high-water mark (one PUT each); one flow beforehand leaves this one none.
    warm_masks = make_masks(1)
    warm_annotation = create_annotation(alice)["id"]
    warm = create_group(alice, warm_annotation, warm_masks)
    put_all(warm["uploads"], warm_masks)
    assert alice.post(f"{group_url(warm_annotation, warm['id'])}/complete").status_code == 200
    pending0, complete0 = _groups(server, "pending"), _groups(server, "complete")
    before = scrape(server.url)

    annotation = create_annotation(alice)
    group = create_group(alice, annotation["id"], masks)
    assert _groups(server, "pending") == pending0 + 1
    base = group_url(annotation["id"], group["id"])
    # With the embedded store the PUTs reach this server too; with S3 only the bucket sees them.
    embedded = group["uploads"][0]["url"].startswith(f"{server.url}/storage/")
    put_all(group["uploads"][:2], masks)
    assert alice.post(f"{base}/complete").status_code == 409  # one file missing
    put_all(group["uploads"][2:], masks)
    assert alice.post(f"{base}/complete").status_code == 200
    assert alice.post(f"{base}/complete").status_code == 200  # idempotent: nothing redone
    assert _groups(server, "pending") == pending0
    assert _groups(server, "complete") == complete0 + 1
    mask_id = alice.get(f"{base}/masks").json()["items"][0]["id"]
    assert alice.get(f"{base}/masks/{mask_id}/download-url").status_code == 200
    assert alice.get(f"{base}/masks/{mask_id}/content").status_code == 307
    assert alice.delete(base).status_code == 204
    after = scrape(server.url)

    def http(method: str, route: str, status: int) -> float:
        labels = {"method": method, "route": route, "status": str(status)}
        return delta(before, after, "pacs_http_requests_total", **labels)

    assert http("POST", "/api/annotations", 201) == 1
    assert http("POST", GROUPS, 201) == 1
    assert http("PUT", STORAGE, 200) == (3 if embedded else 0)
    assert http("POST", GROUP + "/complete", 409) == 1
    assert http("POST", GROUP + "/complete", 200) == 2
    assert http("GET", MASK + "/download-url", 200) == 1
    assert http("GET", MASK + "/content", 307) == 1
    assert http("DELETE", GROUP, 204) == 1
    assert (
        delta(
            before,
            after,
            "pacs_http_request_duration_seconds_count",
            method="POST",
            route=GROUP + "/complete",
        )
        == 3
    )

    def storage(operation: str, outcome: str = "2xx") -> float:
        return delta(
            before, after, "pacs_storage_operations_total", operation=operation, outcome=outcome
        )

    assert storage("PresignPutObject") == 3
    assert storage("PresignGetObject") == 2
    # The refused complete lists the prefix twice: once without the group's lock, then again
    # under it before it refuses (what a 409 removes is judged on what storage holds then); the
    # passing complete lists once, the idempotent third not at all, the delete once.
    assert storage("ListObjects") == 4
    # metadata.json, the annotation's recovery document and the group's tombstone.
    assert storage("PutObject") == 3
    assert storage("DeleteObjects") == 1
    assert after.total("pacs_storage_operations_total", outcome="5xx") == before.total(
        "pacs_storage_operations_total", outcome="5xx"
    )
    assert (
        delta(
            before, after, "pacs_storage_operation_duration_seconds_count", operation="ListObjects"
        )
        == 4
    )
    assert delta(before, after, "pacs_signed_urls_total", method="PUT") == 3
    assert delta(before, after, "pacs_signed_urls_total", method="GET") == 2

    assert delta(before, after, "pacs_upload_completions_total", outcome="completed") == 1
    assert delta(before, after, "pacs_upload_completions_total", outcome="failed") == 1
    assert delta(before, after, "pacs_upload_files_rejected_total", reason="missing") == 1
    assert delta(before, after, "pacs_upload_files_verified_total") == 3
    assert delta(before, after, "pacs_upload_bytes_verified_total") == sum(
        len(m.body) for m in masks
    )
    assert delta(before, after, "pacs_upload_completion_duration_seconds_count") == 1
    assert after.value("pacs_mask_groups", status="complete") == complete0
    assert after.value("pacs_metrics_database_up") == 1


def test_unknown_paths_share_one_series_and_metrics_need_no_token(server: ServerProcess) -> None:
    before = scrape(server.url)
    for path in ("/nope", "/api/nope/1", "/api/nope/2"):
        assert httpx.get(server.url + path).status_code == 404
    # An id that matches no row still counts under its route template, not its path.
    with server.client("alice") as alice:
        assert alice.get("/api/annotations/987654321").status_code == 404
    after = scrape(server.url)
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    assert delta(before, after, "pacs_http_requests_total", **unmatched) == 3
    route = {"method": "GET", "route": "/api/annotations/{annotation_id}", "status": "404"}
    assert delta(before, after, "pacs_http_requests_total", **route) == 1
    assert not any("987654321" in str(labels) for _, labels in after.samples)
    assert after.value("pacs_build_info", version=__version__) == 1
