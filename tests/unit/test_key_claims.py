"""masks/claims.py parse_key: which object keys belong to a group (no I/O)."""

from __future__ import annotations

import pytest

from pacs_ext.objects.claims import KeyParts, parse_key


@pytest.mark.parametrize(
    ("key", "parts"),
    [
        ("mask/5/7/0001_liver.png", KeyParts(5, 7, "0001_liver.png")),
        ("mask/5/7/metadata.json", KeyParts(5, 7, "metadata.json")),
        ("mask/0/0/x", KeyParts(0, 0, "x")),
        (f"mask/{2**63 - 1}/1/x", KeyParts(2**63 - 1, 1, "x")),
    ],
)
def test_keys_of_a_group_are_parsed(key: str, parts: KeyParts) -> None:
    assert parse_key("mask/", key) == parts


@pytest.mark.parametrize(
    "key",
    [
        "other/5/7/x.png",  # another prefix
        "mask/5/7/",  # no name
        "mask/5/x.png",  # too short
        "mask/5/7/sub/x.png",  # too deep
        "mask/05/7/x.png",  # not canonical: would alias mask/5/7
        "mask/5/+7/x.png",
        "mask/5/-7/x.png",
        "mask/²/7/x.png",  # a digit to str.isdigit, not to the key layout
        "mask/not-a-number/7/x.png",
        f"mask/{2**63}/1/x",  # beyond a BIGINT id
    ],
)
def test_other_shapes_are_not_a_groups_keys(key: str) -> None:
    assert parse_key("mask/", key) is None


def test_the_prefix_is_configurable() -> None:
    assert parse_key("tenant-a/mask/", "tenant-a/mask/1/2/x") == KeyParts(1, 2, "x")
    assert parse_key("tenant-a/mask/", "mask/1/2/x") is None
