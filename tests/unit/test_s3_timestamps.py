"""S3 timestamps read by the fast parser mean the same instants as botocore's reading."""

from __future__ import annotations

import pytest
from botocore.utils import parse_timestamp

from pacs_ext.storage.s3.timestamps import parse


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-29T04:52:25.123Z",  # ListObjectsV2 (AWS, Ceph RGW, MinIO)
        "2026-11-29T04:52:25Z",
        "2026-11-29T04:52:25.123456+00:00",
        "2026-11-29T06:52:25+02:00",
        "Sun, 29 Nov 2026 04:52:25 GMT",  # headers: botocore's parser
        "2026-11-29T04:52:25",  # no zone: botocore's reading
        "1795928945",  # epoch seconds
        1795928945.5,  # JSON protocols (CloudWatch) give numbers, not text
        1795928945,
    ],
)
def test_same_instant_as_botocore(text: str | float) -> None:
    ours, theirs = parse(text), parse_timestamp(text)
    assert ours == theirs
    assert ours.utcoffset() == theirs.utcoffset()
