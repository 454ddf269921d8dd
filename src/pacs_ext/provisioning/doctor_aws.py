"""The steps of `pacs-ext storage check` for what `init` and `monitoring` set up on AWS: TLS
(endpoint scheme and the bucket's TLS-only policy) and CloudWatch monitoring."""

from __future__ import annotations

import json

from botocore.exceptions import ClientError

from . import documents as doc
from . import monitoring
from .diagnosis import INIT
from .doctor_probes import ObjectProbes
from .s3calls import FLAVOUR_NAMES, TRANSPORT_FAILURES, call, error_code, said, transport_error

MONITORING = "run `pacs-ext storage monitoring` with an administrator's keys"


class AwsSteps(ObjectProbes):
    async def tls(self) -> None:
        o = self.o
        plain = [k for k in ("endpoint", "public_endpoint") if getattr(o, k).startswith("http://")]
        if plain:
            why = (
                "object_storage.allow_insecure_endpoint = true"
                if o.allow_insecure_endpoint
                else f"APP_ENV is {self.settings.env!r} (development)"
            )
            return self.add(
                "tls",
                "WARN",
                f"object_storage.{plain[0]} is plain http://: keys' signatures, masks and "
                f"signed URLs cross the network in clear text (allowed: {why})",
                "outside development start-up refuses it unless allow_insecure_endpoint is set",
                "serve the store over https:// (a TLS proxy in front of MinIO or Ceph RGW)",
            )
        https = "requests go over https://"
        if self.blocked:
            return self.add("tls", "PASS", https + "; bucket policy not read: " + self.blocked)
        if not self.settings.bucket.tls_only_policy:
            return self.add("tls", "PASS", https + " (bucket.tls_only_policy = false)")
        try:
            raw = (await call(self.client, "GetBucketPolicy", {"Bucket": o.bucket_name}))["Policy"]
            policy = json.loads(raw)
        except ClientError as exc:
            code, status, _ = error_code(exc)
            if code == "NoSuchBucketPolicy":
                policy = {}
            elif status == 403:
                return self.add(
                    "tls",
                    "PASS",
                    f"{https}; the bucket policy is not readable with these keys ({code}), so "
                    "its TLS-only statement was not checked (the server's keys need not read it)",
                )
            else:
                return self.add("tls", "WARN", f"{https}; GetBucketPolicy: {said(exc)}")
        except TRANSPORT_FAILURES as exc:
            return self.add("tls", "WARN", f"{https}; GetBucketPolicy: {transport_error(exc)}")
        except (KeyError, ValueError):
            policy = {}
        if doc.has_tls_statement(policy, self.settings):
            return self.add("tls", "PASS", f"{https}; the bucket policy denies non-TLS requests")
        return self.add(
            "tls",
            "WARN",
            f"{https}, but the bucket policy does not deny plain-HTTP requests",
            "other clients of the bucket may still use http://",
            f"{INIT} (it adds the {doc.TLS_SID} statement)",
        )

    async def monitoring(self) -> None:
        if self.blocked:
            return self.skip("monitoring")
        if self.flavour in ("ceph", "minio"):
            return self.add(
                "monitoring",
                "SKIP",
                f"{FLAVOUR_NAMES[self.flavour]} has no CloudWatch: monitor it with its own "
                "metrics (and this server's /metrics)",
            )
        wanted = monitoring.metrics_configuration(self.settings)
        found, missing, unreadable = [], [], []
        try:
            current = await call(
                self.client,
                "GetBucketMetricsConfiguration",
                {"Bucket": self.o.bucket_name, "Id": wanted["Id"]},
            )
            if monitoring.same_metrics(current.get("MetricsConfiguration", {}), wanted):
                found.append(f"request metrics {wanted['Id']}")
            else:
                missing.append(f"request metrics {wanted['Id']} on {self.o.key_prefix}")
        except ClientError as exc:
            if error_code(exc)[0] == "NoSuchConfiguration":
                missing.append(f"request metrics {wanted['Id']} on {self.o.key_prefix}")
            else:
                unreadable.append(f"GetBucketMetricsConfiguration: {said(exc)}")
        except TRANSPORT_FAILURES as exc:
            unreadable.append(f"GetBucketMetricsConfiguration: {transport_error(exc)}")
        alarms = monitoring.alarms(self.settings)
        try:
            async with self.storage.service_client("cloudwatch") as cloudwatch:
                names = [a["AlarmName"] for a in alarms]
                answer = await call(cloudwatch, "DescribeAlarms", {"AlarmNames": names})
            there = {a["AlarmName"]: a for a in answer.get("MetricAlarms", ())}
            for alarm in alarms:
                current_alarm = there.get(alarm["AlarmName"])
                if current_alarm is not None and monitoring.same_alarm(current_alarm, alarm):
                    found.append(f"alarm {alarm['AlarmName']}")
                else:
                    missing.append(f"alarm {alarm['AlarmName']}")
        except ClientError as exc:
            unreadable.append(f"DescribeAlarms: {said(exc)}")
        except TRANSPORT_FAILURES as exc:
            unreadable.append(f"DescribeAlarms: {transport_error(exc)}")
        detail = "; ".join(
            part
            for part in (
                "in place: " + ", ".join(found) if found else "",
                "missing: " + ", ".join(missing) if missing else "",
                "not readable with these keys: " + ", ".join(unreadable) if unreadable else "",
            )
            if part
        )
        if not missing and not unreadable:
            return self.add("monitoring", "PASS", detail)
        return self.add(
            "monitoring",
            "WARN",
            detail,
            "without them S3's refusals of browser uploads (expired URLs, CORS, 403) alarm "
            "nowhere: they never reach this server",
            MONITORING,
        )
