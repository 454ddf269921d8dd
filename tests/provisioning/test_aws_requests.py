"""The exact request botocore sends for the one call of `storage monitoring` that moto's server
does not implement (PutBucketMetricsConfiguration: moto takes `PUT ?metrics` for CreateBucket).

No server and no mock of AWS: botocore builds and signs the request from our document, and a
`before-send` hook records it instead of sending it (docs/storage.md, test matrix)."""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree

import botocore.session
from botocore.awsrequest import AWSPreparedRequest, AWSResponse

from pacs_ext.core.config import Settings
from pacs_ext.provisioning.monitoring import metrics_configuration

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class _Raw:
    def stream(self, **_: Any) -> Any:
        yield b""


def sent(operation: str, **params: Any) -> AWSPreparedRequest:
    session = botocore.session.get_session()
    client = session.create_client(
        "s3",
        region_name="ap-northeast-2",
        aws_access_key_id="AKIAEXAMPLE",
        aws_secret_access_key="secret",
    )
    requests: list[AWSPreparedRequest] = []

    def record(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        requests.append(request)
        return AWSResponse(request.url, 200, {}, _Raw())  # type: ignore[arg-type]

    client.meta.events.register("before-send.s3.*", record)
    getattr(client, operation)(**params)
    assert len(requests) == 1
    return requests[0]


def test_put_bucket_metrics_configuration_request() -> None:
    settings = Settings(object_storage={"provider": "s3", "bucket_name": "pacs-masks"})
    config = metrics_configuration(settings)
    request = sent(
        "put_bucket_metrics_configuration",
        Bucket="pacs-masks",
        Id=config["Id"],
        MetricsConfiguration=config,
    )
    assert request.method == "PUT"
    assert request.url == (
        "https://pacs-masks.s3.ap-northeast-2.amazonaws.com/?metrics&id=pacs-ext-masks"
    )
    assert b"SignedHeaders=" in request.headers["Authorization"]
    root = ElementTree.fromstring(request.body)
    assert root.tag == f"{NS}MetricsConfiguration"
    assert root.findtext(f"{NS}Id") == "pacs-ext-masks"
    assert root.findtext(f"{NS}Filter/{NS}Prefix") == "mask/"
    assert len(root) == 2  # nothing else: no access point, no tag filter


def test_get_bucket_metrics_configuration_request() -> None:
    request = sent("get_bucket_metrics_configuration", Bucket="pacs-masks", Id="pacs-ext-masks")
    assert request.method == "GET"
    assert request.url.endswith("/?metrics&id=pacs-ext-masks")
