"""storage init compares the bucket's CORS with the configured one: equal rules are equal
whatever order the store returns origins, methods and headers in."""

from __future__ import annotations

import random

from pacs_ext.provisioning.documents import same_cors

ORIGINS = [f"https://viewer-{n}.hospital.example" for n in range(12)]
HEADERS = ["Content-Type", "Content-MD5", "If-None-Match", "x-amz-server-side-encryption"]


def _rule(origins: list[str], headers: list[str]) -> dict[str, object]:
    return {
        "ID": "pacs-ext",
        "AllowedOrigins": origins,
        "AllowedMethods": ["GET", "PUT", "HEAD"],
        "AllowedHeaders": headers,
        "ExposeHeaders": ["ETag"],
        "MaxAgeSeconds": 3000,
    }


def test_the_same_rule_in_any_order_is_the_same() -> None:
    desired = [_rule(ORIGINS, HEADERS)]
    shuffle = random.Random(7)
    for _ in range(200):
        origins, headers = ORIGINS[:], HEADERS[:]
        shuffle.shuffle(origins)
        shuffle.shuffle(headers)
        stored = _rule(origins, [h.lower() for h in headers])
        stored["AllowedMethods"] = ["head", "put", "get"]
        del stored["ID"]
        assert same_cors([stored], desired), origins


def test_a_different_rule_is_different() -> None:
    desired = [_rule(ORIGINS, HEADERS)]
    assert not same_cors([_rule(ORIGINS[:-1], HEADERS)], desired)
    assert not same_cors([_rule(ORIGINS, HEADERS), _rule(ORIGINS, HEADERS)], desired)
    assert not same_cors([], desired)
