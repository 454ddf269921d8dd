"""The documents `storage init` and `storage policy` produce, and the comparisons that make a
second init a no-op whatever shape the store reads them back in."""

from __future__ import annotations

import pytest

from pacs_ext.core.config import ConfigError, Settings, load_settings
from pacs_ext.provisioning import documents as doc
from pacs_ext.provisioning.diagnosis import region
from pacs_ext.provisioning.s3calls import flavour_of


def settings(**bucket: object) -> Settings:
    return Settings(
        server={"cors_allowed_origins": ["http://a.test"]},
        object_storage={"provider": "s3", "bucket_name": "masks", "key_prefix": "seg/"},
        bucket=bucket,
    )


TAGGED = {"And": {"Prefix": "seg/", "Tags": [{"Key": "pacs-ext-lifecycle", "Value": "transition"}]}}


def test_lifecycle_rules_parts_switch_off_one_by_one() -> None:
    full = doc.lifecycle_rules(settings())
    assert full == [
        {
            # Only tagged objects (client uploads) move: metadata.json never does.
            "ID": "pacs-ext-seg/transitions",
            "Filter": TAGGED,
            "Status": "Enabled",
            "Transitions": [
                {"Days": 90, "StorageClass": "STANDARD_IA"},
                {"Days": 365, "StorageClass": "GLACIER_IR"},
            ],
        },
        {
            "ID": "pacs-ext-seg/",
            "Filter": {"Prefix": "seg/"},
            "Status": "Enabled",
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
        },
    ]
    no_ia = doc.lifecycle_rules(settings(lifecycle_ia_days=0))
    assert no_ia[0]["Transitions"] == [{"Days": 365, "StorageClass": "GLACIER_IR"}]
    refused = doc.lifecycle_rules(settings(), frozenset({"STANDARD_IA", "GLACIER_IR"}))
    assert [r["ID"] for r in refused] == ["pacs-ext-seg/"]
    off = settings(lifecycle_ia_days=0, lifecycle_archive_days=0, lifecycle_abort_multipart_days=0)
    assert doc.lifecycle_rules(off) == []


def test_rules_read_back_reordered_or_in_another_shape_are_the_same_rules() -> None:
    desired = doc.lifecycle_rules(settings())
    moves, abort = desired
    # Ceph RGW returns the transitions in another order, and the tag as Filter{Prefix, Tag}.
    rgw = {
        **moves,
        "Filter": {"Prefix": "seg/", "Tag": TAGGED["And"]["Tags"][0]},
        "Transitions": list(reversed(moves["Transitions"])),
    }
    assert doc.same_lifecycle_rules([abort, rgw], desired)
    legacy = {k: v for k, v in abort.items() if k not in ("Filter", "ID")} | {"Prefix": "seg/"}
    assert doc.same_lifecycle_rules([rgw, legacy], desired)
    assert doc.is_ours(legacy, desired, "seg/")
    untagged = {**moves, "Filter": {"Prefix": "seg/"}}  # would archive metadata.json
    assert not doc.same_lifecycle_rules([untagged, abort], desired)
    assert doc.is_ours(untagged, desired, "seg/")  # by its ID: replaced, not duplicated
    # The one rule of earlier versions (transitions on the whole prefix) is ours by its ID.
    old = {**abort, "Transitions": moves["Transitions"]}
    assert doc.is_ours(old, desired, "seg/")
    other = {**untagged, "ID": "someone-else", "Filter": {"Prefix": "logs/"}}
    assert not doc.is_ours(other, desired, "seg/")
    sized = {**moves, "ID": "x", "Filter": {"And": {"Prefix": "seg/", "ObjectSizeGreaterThan": 1}}}
    assert doc.rule_filter(sized) == (None, frozenset())


def test_cors_comparison_ignores_id_and_order() -> None:
    (desired,) = doc.cors_configuration(settings())["CORSRules"]
    read_back = {k: v for k, v in desired.items() if k != "ID"}
    read_back["AllowedMethods"] = ["GET", "PUT", "DELETE", "HEAD", "POST"]  # as RGW returns it
    assert doc.same_cors([read_back], [desired])
    assert not doc.same_cors([{**read_back, "AllowedOrigins": ["*"]}], [desired])
    assert not doc.same_cors([read_back, read_back], [desired])
    assert not doc.same_cors([], [desired])


def test_policy_grants_the_prefix_only_and_nothing_over_plain_http() -> None:
    policy = doc.iam_policy(settings())
    resources = {s["Sid"]: s["Resource"] for s in policy["Statement"]}
    assert resources == {
        "MaskObjects": "arn:aws:s3:::masks/seg/*",
        "ListMaskPrefix": "arn:aws:s3:::masks",
        "ListMaskUploads": "arn:aws:s3:::masks",
        "DenyInsecureTransport": ["arn:aws:s3:::masks", "arn:aws:s3:::masks/*"],
    }
    deny = policy["Statement"][-1]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert "Principal" not in deny  # an identity policy names none
    # Uploads carry the transition tag; GLACIER_IR needs no restore.
    assert policy["Statement"][0]["Action"][-1] == "s3:PutObjectTagging"
    flexible = doc.iam_policy(settings(lifecycle_archive_storage_class="GLACIER"))
    assert flexible["Statement"][0]["Action"][-1] == "s3:RestoreObject"
    # Over an http:// endpoint the deny would lock the server out: left out.
    plain = Settings(object_storage={"provider": "s3", "endpoint": "http://rgw:7480"})
    assert "DenyInsecureTransport" not in {s["Sid"] for s in doc.iam_policy(plain)["Statement"]}


def test_bucket_policy_keeps_other_statements_and_is_recognised_read_back() -> None:
    theirs = {"Sid": "Replication", "Effect": "Allow", "Principal": {"AWS": "arn:x"}}
    policy = doc.bucket_policy(settings(), {"Version": "2012-10-17", "Statement": [theirs]})
    assert policy["Statement"][0] == theirs
    assert policy["Statement"][1]["Principal"] == "*"
    assert doc.has_tls_statement(policy, settings())
    # AWS reads a single resource back as a string and "*" as {"AWS": "*"}; another Sid.
    read_back = {**policy["Statement"][1], "Sid": "x", "Principal": {"AWS": "*"}}
    assert doc.has_tls_statement({"Statement": [read_back]}, settings())
    assert not doc.has_tls_statement({"Statement": [theirs]}, settings())
    as_bucket_policy = doc.iam_policy(settings(), principal="arn:aws:iam:::user/pacs")
    # Every grant names the principal; the TLS-only deny applies to everyone.
    assert {str(s["Principal"]) for s in as_bucket_policy["Statement"]} == {
        "{'AWS': ['arn:aws:iam:::user/pacs']}",
        "*",
    }


def test_public_access_block_on_ceph_leaves_the_two_rgw_cannot_live_with() -> None:
    assert doc.public_access_block(ceph=False) == doc.PUBLIC_ACCESS_BLOCK
    assert doc.public_access_block(ceph=True) == {
        "BlockPublicAcls": False,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": False,
        "RestrictPublicBuckets": True,
    }


@pytest.mark.parametrize(
    ("configured", "actual", "flavour", "status"),
    [
        ("ap-northeast-2", "ap-northeast-2", "aws", "PASS"),
        ("us-east-1", "ap-northeast-2", "aws", "FAIL"),
        ("us-east-1", "default", "ceph", "PASS"),
        ("us-east-1", "eu-central", "ceph", "WARN"),
        ("us-east-1", "eu-west-1", "minio", "FAIL"),
    ],
)
def test_region_verdicts(configured: str, actual: str, flavour: str, status: str) -> None:
    verdict = region(configured, actual, flavour)  # type: ignore[arg-type]
    assert verdict.status == status
    if status != "PASS":
        assert verdict.fix == f"set object_storage.region = {actual!r}"


def test_bucket_location_names_and_store_flavours() -> None:
    assert doc.normalise_region(None) == "us-east-1"
    assert doc.normalise_region("") == "us-east-1"
    assert doc.normalise_region("EU") == "eu-west-1"
    s3 = settings()
    rgw_id = "tx00000a466512061198911-006b081bde-100a-default"
    assert flavour_of(s3, {"x-amz-request-id": rgw_id}) == "ceph"
    assert flavour_of(s3, {"server": "AmazonS3"}) == "aws"
    compatible = Settings(object_storage={"provider": "s3", "endpoint": "http://s3.local"})
    assert flavour_of(compatible, {"server": "MinIO"}) == "minio"
    assert flavour_of(compatible, {}) == "s3-compatible"


def test_bucket_settings_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_BUCKET__LIFECYCLE_IA_DAYS", "400")
    with pytest.raises(ConfigError, match=r"lifecycle_archive_days \(365\) must be after"):
        load_settings()
    monkeypatch.setenv("APP_BUCKET__LIFECYCLE_IA_DAYS", "30")
    monkeypatch.setenv("APP_BUCKET__LIFECYCLE_IA_STORAGE_CLASS", "cold tier")
    with pytest.raises(ConfigError, match=r"bucket\.lifecycle_ia_storage_class"):
        load_settings()
