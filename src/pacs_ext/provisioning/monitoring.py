"""`pacs-ext storage monitoring`: the spec's CloudWatch side of the bucket.

Browser PUTs refused by S3 (an expired URL, CORS, a 403) never reach this server, so only the
bucket's own metrics can alarm on them. This sets up an S3 request-metrics configuration on the
key prefix (Put/Get/Delete requests, bytes, 4xx and 5xx per minute in CloudWatch), the spec's
alarms on it (`4xxErrors > 5`, `5xxErrors > 1` by default), optionally server access logging,
and prints the CloudTrail data-event command. Like `init`, each part is read, compared and
written only when it differs, so a second run changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from ..core.config import Settings
from .outcomes import Outcome, Request
from .s3calls import TRANSPORT_FAILURES, call, endpoint_name, error_code, said, transport_error

ALARM_METRICS = ("4xxErrors", "5xxErrors")
# Who writes S3 server access logs into the log bucket (its bucket policy must allow it).
LOGGING_SERVICE = "logging.s3.amazonaws.com"
MONITORING_ACTIONS = (
    "s3:GetMetricsConfiguration",
    "s3:PutMetricsConfiguration",
    "s3:GetBucketLogging",
    "s3:PutBucketLogging",
    "cloudwatch:DescribeAlarms",
    "cloudwatch:PutMetricAlarm",
)
ADMIN_HINT = "monitoring needs an administrator's keys, allowed " + ", ".join(MONITORING_ACTIONS)


# ---- the documents ---------------------------------------------------------------------


def metrics_configuration(settings: Settings) -> dict[str, Any]:
    """Request metrics for the objects under the key prefix only (not logs, not exports)."""
    return {
        "Id": settings.monitoring.metrics_filter_id,
        "Filter": {"Prefix": settings.object_storage.key_prefix},
    }


def alarm_name(settings: Settings, metric: str) -> str:
    return f"pacs-ext-{settings.object_storage.bucket_name}-{metric}"


def alarms(settings: Settings) -> list[dict[str, Any]]:
    """PutMetricAlarm parameters of the spec's two alarms."""
    m = settings.monitoring
    bucket = settings.object_storage.bucket_name
    thresholds = {"4xxErrors": m.alarm_4xx_threshold, "5xxErrors": m.alarm_5xx_threshold}
    why = {
        "4xxErrors": "refused requests (expired or altered signed URLs, CORS, access denied)",
        "5xxErrors": "S3 failing requests",
    }
    return [
        {
            "AlarmName": alarm_name(settings, metric),
            "AlarmDescription": f"pacs-ext: {why[metric]} on s3://{bucket}/"
            f"{settings.object_storage.key_prefix}",
            "Namespace": "AWS/S3",
            "MetricName": metric,
            "Dimensions": [
                {"Name": "BucketName", "Value": bucket},
                {"Name": "FilterId", "Value": m.metrics_filter_id},
            ],
            "Statistic": "Sum",
            "Period": m.alarm_period_seconds,
            "EvaluationPeriods": m.alarm_evaluation_periods,
            "Threshold": float(thresholds[metric]),
            "ComparisonOperator": "GreaterThanThreshold",
            # No requests in a period is no metric at all: that is not an error.
            "TreatMissingData": "notBreaching",
            "AlarmActions": [m.sns_topic_arn] if m.sns_topic_arn else [],
        }
        for metric in ALARM_METRICS
    ]


def logging_status(settings: Settings) -> dict[str, Any]:
    m = settings.monitoring
    if not m.access_log_bucket:
        return {}
    return {
        "LoggingEnabled": {"TargetBucket": m.access_log_bucket, "TargetPrefix": m.access_log_prefix}
    }


def log_bucket_policy(settings: Settings) -> dict[str, Any]:
    """What the log bucket needs so that S3 may deliver this bucket's access logs to it."""
    m = settings.monitoring
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "S3ServerAccessLogs",
                "Effect": "Allow",
                "Principal": {"Service": LOGGING_SERVICE},
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{m.access_log_bucket}/{m.access_log_prefix}*",
                "Condition": {
                    "ArnLike": {
                        "aws:SourceArn": f"arn:aws:s3:::{settings.object_storage.bucket_name}"
                    }
                },
            }
        ],
    }


def cloudtrail_command(settings: Settings, trail: str = "TRAIL") -> str:
    """The data-event selector that audits every object call under the key prefix. Printed,
    not run: a trail (and its own log bucket) is an account-wide decision."""
    o = settings.object_storage
    selectors = [
        {
            "Name": f"pacs-ext objects in {o.bucket_name}/{o.key_prefix}",
            "FieldSelectors": [
                {"Field": "eventCategory", "Equals": ["Data"]},
                {"Field": "resources.type", "Equals": ["AWS::S3::Object"]},
                {
                    "Field": "resources.ARN",
                    "StartsWith": [f"arn:aws:s3:::{o.bucket_name}/{o.key_prefix}"],
                },
            ],
        }
    ]
    return (
        f"aws cloudtrail put-event-selectors --region {o.region} --trail-name {trail} "
        f"--advanced-event-selectors '{json.dumps(selectors, separators=(',', ':'))}'"
    )


# ---- comparisons -----------------------------------------------------------------------


def same_alarm(current: dict[str, Any], desired: dict[str, Any]) -> bool:
    def key(a: dict[str, Any]) -> tuple[Any, ...]:
        dims = frozenset((d.get("Name"), d.get("Value")) for d in a.get("Dimensions") or ())
        return (
            a.get("Namespace"),
            a.get("MetricName"),
            dims,
            a.get("Statistic"),
            int(a.get("Period") or 0),
            int(a.get("EvaluationPeriods") or 0),
            float(a.get("Threshold") or 0),
            a.get("ComparisonOperator"),
            a.get("TreatMissingData") or "missing",
            frozenset(a.get("AlarmActions") or ()),
        )

    return key(current) == key(desired)


def same_metrics(current: dict[str, Any], desired: dict[str, Any]) -> bool:
    flt = current.get("Filter") or {}
    return bool(current.get("Id") == desired["Id"] and flt == desired["Filter"])


# ---- applying them ---------------------------------------------------------------------


@dataclass
class Monitor:
    settings: Settings
    s3: Any
    cloudwatch: Any
    dry_run: bool = False
    requests: list[Request] = field(default_factory=list)

    @property
    def bucket(self) -> str:
        return self.settings.object_storage.bucket_name

    async def run(self) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for step in (self._request_metrics, self._alarms, self._access_logging):
            try:
                outcomes.extend(await step())
            except _Stop as stop:
                outcomes.append(stop.outcome)
                if stop.fatal:
                    break
        return outcomes

    async def _call(
        self, client: Any, operation: str, params: dict[str, Any], missing: str = ""
    ) -> dict[str, Any]:
        try:
            return await call(client, operation, params)
        except ClientError as exc:
            if missing and error_code(exc)[0] == missing:
                return {}
            raise
        except TRANSPORT_FAILURES as exc:
            where = "CloudWatch" if client is self.cloudwatch else endpoint_name(self.settings)
            raise _Stop(
                Outcome(
                    _setting(operation),
                    "failed",
                    f"cannot reach {where} for {operation}: {transport_error(exc)}",
                ),
                fatal=True,
            ) from None

    async def _write(
        self, client: Any, service: str, operation: str, params: dict[str, Any]
    ) -> None:
        self.requests.append(Request(f"{service}:{operation}", params))
        if not self.dry_run:
            await self._call(client, operation, params)

    def _refused(self, setting: str, operation: str, exc: ClientError) -> _Stop:
        code, status, _ = error_code(exc)
        if status == 403 or code in ("AccessDenied", "AccessDeniedException"):
            detail = f"{operation} was refused ({said(exc)}); {ADMIN_HINT}"
            return _Stop(Outcome(setting, "failed", detail))
        return _Stop(Outcome(setting, "failed", f"{operation} failed ({said(exc)})"))

    async def _request_metrics(self) -> list[Outcome]:
        desired = metrics_configuration(self.settings)
        setting = "request metrics"
        summary = f"{desired['Id']} on {desired['Filter']['Prefix']} (CloudWatch AWS/S3, 1 min)"
        params = {"Bucket": self.bucket, "Id": desired["Id"]}
        try:
            current = (
                await self._call(
                    self.s3, "GetBucketMetricsConfiguration", params, "NoSuchConfiguration"
                )
            ).get("MetricsConfiguration", {})
            if same_metrics(current, desired):
                return [Outcome(setting, "unchanged", summary)]
            await self._write(
                self.s3,
                "s3",
                "PutBucketMetricsConfiguration",
                {**params, "MetricsConfiguration": desired},
            )
        except ClientError as exc:
            raise self._refused(setting, "PutBucketMetricsConfiguration", exc) from None
        return [Outcome(setting, "changed", summary)]

    async def _alarms(self) -> list[Outcome]:
        desired = alarms(self.settings)
        names = [a["AlarmName"] for a in desired]
        try:
            found = await self._call(self.cloudwatch, "DescribeAlarms", {"AlarmNames": names})
        except ClientError as exc:
            raise self._refused("alarms", "DescribeAlarms", exc) from None
        current = {a["AlarmName"]: a for a in found.get("MetricAlarms", ())}
        outcomes = []
        for alarm in desired:
            summary = (
                f"{alarm['AlarmName']}: {alarm['MetricName']} > {alarm['Threshold']:g} "
                f"in {alarm['Period']} s"
            )
            if alarm["AlarmActions"]:
                summary += f", notifies {alarm['AlarmActions'][0]}"
            else:
                summary += " (no SNS topic: monitoring.sns_topic_arn is empty)"
            name = f"alarm {alarm['MetricName']}"
            there = current.get(alarm["AlarmName"])
            if there is not None and same_alarm(there, alarm):
                outcomes.append(Outcome(name, "unchanged", summary))
                continue
            try:
                await self._write(self.cloudwatch, "cloudwatch", "PutMetricAlarm", alarm)
            except ClientError as exc:
                raise self._refused(name, "PutMetricAlarm", exc) from None
            outcomes.append(Outcome(name, "changed", summary))
        return outcomes

    async def _access_logging(self) -> list[Outcome]:
        setting = "access logging"
        desired = logging_status(self.settings)
        if not desired:
            return [Outcome(setting, "skipped", "monitoring.access_log_bucket is empty")]
        target = desired["LoggingEnabled"]
        summary = f"to s3://{target['TargetBucket']}/{target['TargetPrefix']}"
        try:
            current = (await self._call(self.s3, "GetBucketLogging", {"Bucket": self.bucket})).get(
                "LoggingEnabled", {}
            )
            if {k: current.get(k) for k in target} == target:
                return [Outcome(setting, "unchanged", summary)]
            await self._write(
                self.s3,
                "s3",
                "PutBucketLogging",
                {"Bucket": self.bucket, "BucketLoggingStatus": desired},
            )
        except ClientError as exc:
            if error_code(exc)[0] == "InvalidTargetBucketForLogging":
                policy = json.dumps(log_bucket_policy(self.settings), separators=(",", ":"))
                return [
                    Outcome(
                        setting,
                        "failed",
                        f"S3 refused {target['TargetBucket']!r} as the log bucket ({said(exc)})",
                        f"let S3 write there: aws s3api put-bucket-policy --bucket "
                        f"{target['TargetBucket']} --policy '{policy}' (same region as "
                        f"{self.bucket}, no default encryption with KMS), then re-run",
                    )
                ]
            raise self._refused(setting, "PutBucketLogging", exc) from None
        return [Outcome(setting, "changed", summary)]


class _Stop(Exception):
    def __init__(self, outcome: Outcome, *, fatal: bool = False) -> None:
        super().__init__(outcome.detail)
        self.outcome = outcome
        self.fatal = fatal


def _setting(operation: str) -> str:
    if "Alarm" in operation:
        return "alarms"
    return "access logging" if "Logging" in operation else "request metrics"
