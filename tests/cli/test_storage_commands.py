"""`pacs-ext storage init | policy | check` as subprocesses against Ceph RGW: a correct setup
passes every step, init is idempotent, a dry run changes nothing, and a wrong secret, a
missing bucket and a CORS rule without the configured origin each fail at their step."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from botocore.exceptions import ClientError

from fixtures.factories import create_annotation, create_group, make_masks
from fixtures.rgw import Rgw
from fixtures.server import ServerProcess
from fixtures.storage_cli import VIEWER, check, init_lines, run, statuses, storage_env

STEPS = [
    "credentials",
    "bucket",
    "clock",
    "region",
    "tls",
    f"cors {VIEWER}",
    "cors foreign origin",
    "presigned PUT",
    "presigned GET",
    "delete",
    "sse",
    "monitoring",
]
# An S3-compatible endpoint nothing listens on: for commands that make no call.
NO_RGW = Rgw(
    endpoint="http://127.0.0.1:9", access_key="", secret_key="", region="us-east-1", dir=None
)
REQUESTS = [
    "CreateBucket",
    "PutBucketCors",
    "PutPublicAccessBlock",
    "PutBucketLifecycleConfiguration",
    "PutBucketEncryption",
]


@pytest.fixture
def new_bucket(rgw: Rgw) -> Iterator[str]:
    """A bucket name nobody has created yet (dropped afterwards if something created it)."""
    name = f"pacs-test-{uuid.uuid4().hex[:12]}"
    yield name
    if _exists(rgw, name):
        rgw.drop_bucket(name)


@pytest.fixture
def bucket(rgw: Rgw) -> Iterator[str]:
    with rgw.bucket() as name:
        yield name


def _exists(rgw: Rgw, name: str) -> bool:
    try:
        rgw.client().head_bucket(Bucket=name)
    except ClientError:
        return False
    return True


@pytest.mark.rgw
def test_init_twice_then_every_check_passes(rgw: Rgw, new_bucket: str, tmp_path: Path) -> None:
    env = storage_env(tmp_path, rgw, new_bucket)
    first = run(env, "init")
    assert first.returncode == 0, first.stdout + first.stderr
    lines = init_lines(first.stdout)
    assert lines["bucket"] == [f"changed — created {new_bucket!r} in {rgw.region}"]
    assert lines["cors"] == [f"changed — allows {VIEWER}"]
    assert lines["lifecycle"][0] == "changed — mask/: abort incomplete uploads after 7 d"
    # RGW stores a rule naming any class but has neither: init leaves them out and says so.
    assert lines["lifecycle"][1].startswith("refused — Ceph RGW has no storage class GLACIER")
    assert lines["encryption"] == ["refused — Ceph RGW refused it (InvalidArgument (HTTP 400))"]
    assert "KMS" in first.stdout
    assert "radosgw-admin zonegroup placement add" in first.stdout
    assert lines["public access block"][0].startswith("changed — public ACLs and policies")
    assert lines["versioning"] == ["unchanged — off"]

    s3 = rgw.client()
    rules = s3.get_bucket_cors(Bucket=new_bucket)["CORSRules"]
    assert len(rules) == 1
    assert rules[0]["AllowedOrigins"] == [VIEWER]
    assert sorted(rules[0]["AllowedMethods"]) == ["DELETE", "GET", "HEAD", "POST", "PUT"]
    assert rules[0]["ExposeHeaders"] == ["ETag"]
    assert rules[0]["MaxAgeSeconds"] == 3000
    (rule,) = s3.get_bucket_lifecycle_configuration(Bucket=new_bucket)["Rules"]
    assert rule["Filter"] == {"Prefix": "mask/"}
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    assert "Transitions" not in rule
    block = s3.get_public_access_block(Bucket=new_bucket)["PublicAccessBlockConfiguration"]
    assert block["IgnorePublicAcls"]
    assert block["RestrictPublicBuckets"]

    second = run(env, "init")
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"no changes: bucket {new_bucket!r} already matches the configuration" in second.stdout
    assert all(
        not line.startswith("changed") for ls in init_lines(second.stdout).values() for line in ls
    )

    code, steps = check(env)
    assert code == 0, steps
    assert list(steps) == STEPS
    # The test RGW speaks plain HTTP (allowed in development: a WARN) and has no CloudWatch.
    assert statuses(steps) == {**dict.fromkeys(STEPS, "PASS"), "tls": "WARN", "monitoring": "SKIP"}
    assert "plain http://" in steps["tls"]["detail"]
    assert steps["monitoring"]["detail"].startswith("Ceph RGW has no CloudWatch")
    assert steps["sse"]["detail"].startswith("not configured")
    # Neither the storage-class probe of init nor the check's probe object is left behind.
    assert s3.list_objects_v2(Bucket=new_bucket)["KeyCount"] == 0


@pytest.mark.rgw
def test_dry_run_prints_the_requests_and_changes_nothing(
    rgw: Rgw, new_bucket: str, tmp_path: Path
) -> None:
    r = run(storage_env(tmp_path, rgw, new_bucket), "init", "--dry-run")
    assert r.returncode == 0, r.stderr
    requests = json.loads(r.stdout)
    assert [q["operation"] for q in requests] == REQUESTS
    assert {q["params"]["Bucket"] for q in requests} == {new_bucket}
    cors = requests[1]["params"]["CORSConfiguration"]["CORSRules"][0]
    assert cors["AllowedOrigins"] == [VIEWER]
    moves, abort = requests[3]["params"]["LifecycleConfiguration"]["Rules"]
    assert moves["Transitions"] == [
        {"Days": 90, "StorageClass": "STANDARD_IA"},
        {"Days": 365, "StorageClass": "GLACIER_IR"},
    ]
    assert moves["Filter"]["And"]["Tags"] == [{"Key": "pacs-ext-lifecycle", "Value": "transition"}]
    assert abort["Filter"] == {"Prefix": "mask/"}
    assert "would create" in r.stderr
    assert not _exists(rgw, new_bucket)


@pytest.mark.rgw
def test_wrong_secret_fails_at_credentials(rgw: Rgw, bucket: str, tmp_path: Path) -> None:
    env = storage_env(tmp_path, rgw, bucket, secret_key="not-the-secret-key-at-all")
    code, steps = check(env)
    assert code == 1
    assert steps["credentials"]["status"] == "FAIL"
    assert "SignatureDoesNotMatch" in steps["credentials"]["detail"]
    assert "object_storage.secret_key" in steps["credentials"]["fix"]
    assert steps["clock"]["status"] == "PASS"  # the store's Date came with its refusal
    # tls judges the configured endpoint's scheme: it needs no credentials.
    skipped = [n for n in STEPS if n not in ("credentials", "clock", "tls")]
    assert {steps[n]["status"] for n in skipped} == {"SKIP"}
    assert steps["tls"]["status"] == "WARN"
    assert steps["presigned PUT"]["detail"] == "skipped: the credentials were refused"

    init = run(env, "init")
    assert init.returncode == 1
    assert "SignatureDoesNotMatch" in init.stdout
    assert "not-the-secret-key-at-all" not in init.stdout + init.stderr


@pytest.mark.rgw
def test_missing_bucket_fails_at_bucket(rgw: Rgw, new_bucket: str, tmp_path: Path) -> None:
    code, steps = check(storage_env(tmp_path, rgw, new_bucket))
    assert code == 1
    assert steps["credentials"]["status"] == "PASS"
    assert steps["bucket"]["status"] == "FAIL"
    assert f"bucket {new_bucket!r} does not exist" in steps["bucket"]["detail"]
    assert "pacs-ext storage init" in steps["bucket"]["fix"]
    assert steps["region"]["status"] == "SKIP"
    assert steps["presigned PUT"]["detail"] == f"skipped: bucket {new_bucket!r} does not exist"


@pytest.mark.rgw
def test_cors_without_the_origin_fails_until_init_fixes_it(
    rgw: Rgw, bucket: str, tmp_path: Path
) -> None:
    """Also a bucket someone set up by hand: versioning on, and every public access block
    switch on, with which Ceph RGW refuses all uploads."""
    s3 = rgw.client()
    other = {
        "AllowedOrigins": ["http://other.test"],
        "AllowedMethods": ["PUT", "GET"],
        "AllowedHeaders": ["*"],
    }
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [other]})
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration=dict.fromkeys(
            ["BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"],
            True,
        ),
    )
    env = storage_env(tmp_path, rgw, bucket)

    code, steps = check(env)
    assert code == 1
    failing = {n for n, s in statuses(steps).items() if s == "FAIL"}
    assert failing == {f"cors {VIEWER}", "presigned PUT"}
    assert "HTTP 403 AccessDenied" in steps["presigned PUT"]["detail"]
    assert "BlockPublicAcls" in steps["presigned PUT"]["cause"]
    assert "HTTP 403 without Access-Control-Allow-Origin" in steps[f"cors {VIEWER}"]["detail"]
    assert "pacs-ext storage init" in steps[f"cors {VIEWER}"]["fix"]
    assert steps["cors foreign origin"]["status"] == "PASS"

    dry = run(env, "init", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "PutBucketCors" in [q["operation"] for q in json.loads(dry.stdout)]
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"][0]["AllowedOrigins"] == [
        "http://other.test"
    ]

    fixed = run(env, "init")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    lines = init_lines(fixed.stdout)
    assert lines["cors"] == [f"changed — allows {VIEWER} (replaced 1 rule(s) that differed)"]
    assert lines["versioning"][0].startswith("warning — Enabled: left as is")
    assert lines["public access block"][0].startswith("changed — ")
    # The storage-class probe ran after the public access block was made Ceph-safe.
    assert lines["lifecycle"][0] == "changed — mask/: abort incomplete uploads after 7 d"
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    code, steps = check(env)
    assert code == 0, steps


def test_policy_and_cors_documents(tmp_path: Path) -> None:
    env = storage_env(tmp_path, NO_RGW, "pacs-masks")
    r = run(env, "policy")
    assert r.returncode == 0, r.stderr
    policy = json.loads(r.stdout)
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    objects = by_sid["MaskObjects"]
    assert objects["Resource"] == "arn:aws:s3:::pacs-masks/mask/*"
    assert set(objects["Action"]) == {
        "s3:PutObject",
        "s3:GetObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts",
        "s3:PutObjectTagging",  # uploads carry the lifecycle's transition tag
    }
    listing = by_sid["ListMaskPrefix"]
    assert (listing["Action"], listing["Resource"]) == ("s3:ListBucket", "arn:aws:s3:::pacs-masks")
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["mask/*"]}}
    uploads = by_sid["ListMaskUploads"]
    assert (uploads["Action"], uploads["Resource"]) == (
        "s3:ListBucketMultipartUploads",
        "arn:aws:s3:::pacs-masks",
    )
    # With an endpoint (an S3-compatible store) the bucket-ARN delete RGW needs is there.
    assert by_sid["BatchDeleteOnS3Compatible"]["Resource"] == "arn:aws:s3:::pacs-masks"
    assert all("Principal" not in s for s in policy["Statement"])
    # An http:// endpoint: no TLS-only deny (it would lock the server out), and a note says so.
    assert "DenyInsecureTransport" not in by_sid
    assert "no TLS-only deny" in r.stderr

    cors = json.loads(run(env, "policy", "--cors").stdout)
    assert cors == {
        "CORSRules": [
            {
                "ID": "pacs-ext-viewers",
                "AllowedHeaders": ["*"],
                "AllowedMethods": ["GET", "PUT", "POST", "DELETE", "HEAD"],
                "AllowedOrigins": [VIEWER],
                "ExposeHeaders": ["ETag"],
                "MaxAgeSeconds": 3000,
            }
        ]
    }


def test_local_provider_has_nothing_to_provision(tmp_path: Path) -> None:
    env = storage_env(tmp_path, NO_RGW, "unused")
    env = {k: v for k, v in env.items() if not k.startswith("APP_OBJECT_STORAGE__")}
    r = run(env, "init")
    assert r.returncode == 0, r.stderr
    assert "local store: nothing to provision" in r.stdout
    assert (tmp_path / "data" / "objects").is_dir()
    code, steps = check(env)
    assert code == 0
    assert statuses(steps) == {"local store": "PASS"}


@pytest.mark.server_kinds("postgres-rgw")
def test_the_rgw_servers_bucket_lets_its_own_pages_upload(
    server: ServerProcess, alice: httpx.Client
) -> None:
    """The `server` fixture provisions its RGW bucket with `storage init` for its own origin:
    a browser preflight for an upload URL the API issued passes, another origin's does not."""
    annotation = create_annotation(alice)
    target = create_group(alice, annotation["id"], make_masks(1))["uploads"][0]
    asked = ",".join(h.lower() for h in target["headers"] if h.lower() != "content-length")
    for origin, allowed in ((server.url, True), ("http://elsewhere.test", False)):
        r = httpx.options(
            target["url"],
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": asked,
            },
        )
        assert (r.headers.get("access-control-allow-origin") == origin) is allowed, r.headers
        assert (r.status_code == 200) is allowed
