"""The AWS side of `pacs-ext storage` as subprocesses against moto's server (scripts/moto.sh):
monitoring (request metrics, CloudWatch alarms, access logging), init's lifecycle with the
archive class and the tag filter, SSE, versioning --fix, and what `check` reports.

moto answers these over real HTTP but does not implement PutBucketMetricsConfiguration (it
takes `PUT ?metrics` for CreateBucket and answers 200, and `GET ?metrics` with a listing):
tests/provisioning/test_aws_requests.py checks the exact request botocore sends for it."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.moto import Moto
from fixtures.server import BIN
from fixtures.storage_cli import VIEWER, init_lines

pytestmark = pytest.mark.moto
TOPIC = "arn:aws:sns:us-east-1:123456789012:pacs-alerts"


@pytest.fixture
def bucket(moto: Moto) -> Iterator[str]:
    name = moto.new_bucket_name()
    yield name
    s3 = moto.client()
    try:
        for v in s3.list_object_versions(Bucket=name).get("Versions", []):
            s3.delete_object(Bucket=name, Key=v["Key"], VersionId=v["VersionId"])
        s3.delete_bucket(Bucket=name)
    except s3.exceptions.ClientError:
        pass


def env_for(moto: Moto, tmp_path: Path, bucket: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APP_", "AWS_"))}
    env.update(
        AWS_EC2_METADATA_DISABLED="true",
        APP_CONFIG_DIR=str(tmp_path / "no-config"),
        APP_ENV_FILE="",
        APP_ENV="test",
        APP_SERVER__DATA_DIR=str(tmp_path / "data"),
        APP_SERVER__CORS_ALLOWED_ORIGINS=json.dumps([VIEWER]),
        APP_OBJECT_STORAGE__BUCKET_NAME=bucket,
        **moto.env(),
    )
    env.update(extra)
    return env


def storage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [str(BIN), "storage", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert "Traceback" not in r.stderr, r.stderr
    return r


def test_monitoring_creates_the_alarms_once_and_prints_cloudtrail(
    moto: Moto, bucket: str, tmp_path: Path
) -> None:
    env = env_for(moto, tmp_path, bucket, APP_MONITORING__SNS_TOPIC_ARN=TOPIC)
    assert storage(env, "init").returncode == 0
    dry = storage(env, "monitoring", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    operations = [r["operation"] for r in json.loads(dry.stdout)]
    assert operations == [
        "s3:PutBucketMetricsConfiguration",
        "cloudwatch:PutMetricAlarm",
        "cloudwatch:PutMetricAlarm",
    ]
    cloudwatch = moto.client("cloudwatch")
    names = [f"pacs-ext-{bucket}-4xxErrors", f"pacs-ext-{bucket}-5xxErrors"]
    assert cloudwatch.describe_alarms(AlarmNames=names)["MetricAlarms"] == []  # dry: nothing

    first = storage(env, "monitoring")
    assert first.returncode == 0, first.stdout + first.stderr
    lines = init_lines(first.stdout)
    assert lines["alarm 4xxErrors"][0].startswith("changed — ")
    alarms = {
        a["AlarmName"]: a for a in cloudwatch.describe_alarms(AlarmNames=names)["MetricAlarms"]
    }
    four = alarms[names[0]]
    assert (four["MetricName"], four["Threshold"], four["ComparisonOperator"]) == (
        "4xxErrors",
        5.0,
        "GreaterThanThreshold",
    )
    assert alarms[names[1]]["Threshold"] == 1.0
    assert four["Namespace"] == "AWS/S3"
    assert {(d["Name"], d["Value"]) for d in four["Dimensions"]} == {
        ("BucketName", bucket),
        ("FilterId", "pacs-ext-masks"),
    }
    assert four["AlarmActions"] == [TOPIC]
    assert "aws cloudtrail put-event-selectors" in first.stdout
    assert f'"StartsWith":["arn:aws:s3:::{bucket}/mask/"]' in first.stdout

    second = storage(env, "monitoring")
    lines = init_lines(second.stdout)
    assert lines["alarm 4xxErrors"][0].startswith("unchanged — ")
    assert lines["alarm 5xxErrors"][0].startswith("unchanged — ")
    # moto does not keep request-metrics configurations (see the module docstring).
    assert lines["request metrics"][0].startswith("changed — ")

    # A changed threshold is applied; the other alarm is left alone.
    env["APP_MONITORING__ALARM_4XX_THRESHOLD"] = "20"
    third = init_lines(storage(env, "monitoring").stdout)
    assert third["alarm 4xxErrors"][0].startswith("changed — ")
    assert third["alarm 5xxErrors"][0].startswith("unchanged — ")
    after = cloudwatch.describe_alarms(AlarmNames=names[:1])["MetricAlarms"][0]
    assert after["Threshold"] == 20.0

    check = storage(env, "check", "--json")
    steps = {s["name"]: s for s in json.loads(check.stdout)["steps"]}
    assert steps["monitoring"]["status"] == "WARN"  # moto has no metrics configuration
    assert f"in place: alarm {names[0]}, alarm {names[1]}" in steps["monitoring"]["detail"]
    assert "missing: request metrics pacs-ext-masks on mask/" in steps["monitoring"]["detail"]


def test_access_logging_says_what_the_log_bucket_needs_then_applies(
    moto: Moto, bucket: str, tmp_path: Path
) -> None:
    logs = moto.new_bucket_name()
    moto.client().create_bucket(Bucket=logs)
    env = env_for(moto, tmp_path, bucket, APP_MONITORING__ACCESS_LOG_BUCKET=logs)
    assert storage(env, "init").returncode == 0
    refused = storage(env, "monitoring")
    assert refused.returncode == 1
    lines = init_lines(refused.stdout)
    assert lines["access logging"][0].startswith(f"failed — S3 refused {logs!r} as the log bucket")
    policy = json.loads(refused.stdout.split("--policy '", 1)[1].split("'", 1)[0])
    # The bucket policy the answer prints is what S3 (here moto) wants on the log bucket.
    moto.client().put_bucket_policy(Bucket=logs, Policy=json.dumps(policy))
    applied = storage(env, "monitoring")
    assert applied.returncode == 0, applied.stdout
    assert moto.client().get_bucket_logging(Bucket=bucket)["LoggingEnabled"] == {
        "TargetBucket": logs,
        "TargetPrefix": "s3-access-logs/",
    }
    assert init_lines(storage(env, "monitoring").stdout)["access logging"][0].startswith(
        "unchanged"
    )


def test_init_lifecycle_archives_only_tagged_uploads_and_sse_is_applied(
    moto: Moto, bucket: str, tmp_path: Path
) -> None:
    env = env_for(moto, tmp_path, bucket)
    first = storage(env, "init", "--monitoring")
    assert first.returncode == 0, first.stdout + first.stderr
    lines = init_lines(first.stdout)
    assert lines["lifecycle"] == [
        "changed — mask/ tagged pacs-ext-lifecycle=transition: STANDARD_IA after 90 d, "
        "GLACIER_IR after 365 d; mask/: abort incomplete uploads after 7 d"
    ]
    assert lines["encryption"] == ["changed — default encryption SSE-S3 (AES256)"]
    assert lines["bucket policy"][0].startswith("skipped — the endpoint is plain http://")
    assert lines["alarm 5xxErrors"][0].startswith("changed — ")
    rules = moto.client().get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    transitions = next(r for r in rules if "Transitions" in r)
    assert transitions["Filter"] == {
        "And": {
            "Prefix": "mask/",
            "Tags": [{"Key": "pacs-ext-lifecycle", "Value": "transition"}],
        }
    }
    again = storage(env, "init")
    assert "no changes" in again.stdout, again.stdout


def test_versioning_is_suspended_only_with_fix(moto: Moto, bucket: str, tmp_path: Path) -> None:
    env = env_for(moto, tmp_path, bucket)
    s3 = moto.client()
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for body in (b"first", b"second!"):  # one old version of 5 bytes
        s3.put_object(Bucket=bucket, Key="mask/1/2/a.png", Body=body)
    warned = storage(env, "init")
    assert init_lines(warned.stdout)["versioning"][0].startswith("warning — Enabled: left as is")
    assert "pacs-ext storage init --fix" in warned.stdout
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    fixed = storage(env, "init", "--yes")
    line = init_lines(fixed.stdout)["versioning"][0]
    assert line.startswith("changed — suspended")
    # The 5-byte old body; init's own storage-class probes (empty) left versions too.
    assert re.search(
        r"\d+ old version\(s\) and delete marker\(s\) under mask/ remain, 5 bytes", line
    )
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"
    assert init_lines(storage(env, "init").stdout)["versioning"] == ["unchanged — suspended"]
