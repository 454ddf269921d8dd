"""`pacs-ext storage check`: real calls against the configured storage, one verdict per step.

Uploads and downloads go through the server's own signer and the URLs clients would get, so
the check sees what a viewer will see. After a failure that makes the rest meaningless (bad
credentials, missing bucket) the remaining steps are SKIP with the reason.
"""

from __future__ import annotations

import email.utils
import time

from botocore.exceptions import ClientError

from ..storage.base import StorageError
from . import diagnosis
from .diagnosis import INIT, NTP, POLICY
from .doctor_aws import AwsSteps
from .doctor_run import Status, Step
from .documents import normalise_region
from .s3calls import (
    TRANSPORT_FAILURES,
    call,
    endpoint_name,
    error_code,
    flavour_of,
    response_headers,
    said,
    transport_error,
)

__all__ = ["Doctor", "Status", "Step"]

SKEW_WARN = 300.0  # a 5-minute skew already moves a 10-minute URL's window by half
SKEW_FAIL = 900.0  # SigV4: stores refuse requests more than 15 minutes off


class Doctor(AwsSteps):
    """Credentials, bucket, clock and region here; the browser-facing steps in ObjectProbes,
    TLS and CloudWatch monitoring in AwsSteps."""

    async def run(self) -> list[Step]:
        await self.credentials_and_bucket()
        self.clock()
        await self.region()
        await self.tls()
        await self.cors()
        await self.roundtrip()
        await self.monitoring()
        return self.steps

    # ---- credentials, bucket, clock, region ----------------------------------------------

    async def credentials_and_bucket(self) -> None:
        try:
            await self.storage.prepare_signing()
            self.client = await self.storage.client()
        except StorageError as exc:
            self.add(
                "credentials",
                "FAIL",
                str(exc),
                "no static keys configured and the AWS credential chain found none",
                "set object_storage.access_key and secret_key, or give this machine a role",
            )
            self.blocked = "no usable credentials"
            return self.skip("bucket")
        bucket, prefix = self.o.bucket_name, self.o.key_prefix
        started = time.time()
        error: ClientError | None = None
        try:
            answer = await call(
                self.client, "ListObjectsV2", {"Bucket": bucket, "Prefix": prefix, "MaxKeys": 1}
            )
        except ClientError as exc:
            answer, error = {}, exc
        except TRANSPORT_FAILURES as exc:
            d = diagnosis.unreachable("ListObjectsV2", endpoint_name(self.settings), public=False)
            self.add("credentials", "FAIL", transport_error(exc), d.cause, d.fix)
            self.blocked = f"cannot reach {endpoint_name(self.settings)}"
            return self.skip("bucket")
        self.note_date(response_headers(error or answer), started, time.time())
        key = self.o.access_key or "from the AWS credential chain"
        if error is None:
            self.add("credentials", "PASS", f"access key {key} accepted")
            self.add("bucket", "PASS", f"{bucket!r} exists; listing {prefix} is allowed")
            return None
        code, status, _ = error_code(error)
        accepted = f"access key {key} accepted (the store answered {code}, not an auth error)"
        if code == "NoSuchBucket":
            self.add("credentials", "PASS", accepted)
            self.add(
                "bucket",
                "FAIL",
                f"bucket {bucket!r} does not exist at {endpoint_name(self.settings)}",
                "the bucket was never created, or object_storage.bucket_name is misspelt",
                f"{INIT}, or fix object_storage.bucket_name",
            )
            self.blocked = f"bucket {bucket!r} does not exist"
        elif code == "AccessDenied":
            self.add("credentials", "PASS", accepted)
            self.add(
                "bucket",
                "FAIL",
                f"listing {prefix} in {bucket!r} was refused ({said(error)})",
                "these keys may not list the key prefix of this bucket (or the bucket belongs "
                "to another account)",
                POLICY,
            )
            self.blocked = "the keys may not use the bucket"
        elif status in (400, 403):
            d = diagnosis.credentials(code, self.settings)
            self.add("credentials", "FAIL", f"ListObjectsV2 refused: {said(error)}", d.cause, d.fix)
            self.blocked = "the credentials were refused"
            self.skip("bucket")
        else:
            self.add(
                "credentials",
                "FAIL",
                f"ListObjectsV2 failed: {said(error)}",
                "the store failed the request",
                "retry; if it persists, see the store's logs",
            )
            self.blocked = "the store fails requests"
            self.skip("bucket")
        return None

    def note_date(self, headers: dict[str, str], started: float, ended: float) -> None:
        self.flavour = flavour_of(self.settings, headers)
        try:
            parsed = email.utils.parsedate_to_datetime(headers["date"])
        except (KeyError, TypeError, ValueError):
            return
        # Date has whole seconds: its true instant is half a second later on average.
        self.store_date = parsed.timestamp() + 0.5
        self.local_mid = (started + ended) / 2

    def clock(self) -> None:
        """Runs whenever the store answered at all: skew also explains refused credentials."""
        if self.store_date is None:
            if self.blocked:
                return self.skip("clock")
            return self.add("clock", "WARN", "the store sent no Date header: skew unknown")
        skew = self.store_date - self.local_mid
        detail = f"the store's clock is {skew:+.1f} s from this machine's (Date header)"
        if abs(skew) < SKEW_WARN:
            return self.add("clock", "PASS", detail)
        ttl = self.settings.signed_url.default_ttl
        if abs(skew) < SKEW_FAIL:
            return self.add(
                "clock",
                "WARN",
                detail,
                f"signed URLs start and expire {abs(skew) / 60:.0f} min off at the store (a "
                f"{ttl} s URL may be refused early); at 15 min every signed request fails",
                NTP,
            )
        return self.add(
            "clock",
            "FAIL",
            detail,
            "the store refuses requests 15 min off (RequestTimeTooSkewed)",
            NTP,
        )

    async def region(self) -> None:
        if self.blocked:
            return self.skip("region")
        bucket = self.o.bucket_name
        headers: dict[str, str] = {}
        try:
            headers = response_headers(await call(self.client, "HeadBucket", {"Bucket": bucket}))
        except ClientError as exc:  # a 403 (no plain ListBucket) still names the region on AWS
            headers = response_headers(exc)
        except TRANSPORT_FAILURES as exc:
            return self.add("region", "WARN", f"HeadBucket: {transport_error(exc)}")
        if any(k.startswith("x-rgw-") for k in headers):
            self.flavour = "ceph"
        actual = headers.get("x-amz-bucket-region", "")
        if not actual:
            try:
                location = await call(self.client, "GetBucketLocation", {"Bucket": bucket})
            except ClientError as exc:
                return self.add(
                    "region",
                    "WARN",
                    f"cannot read the bucket's region (GetBucketLocation: {said(exc)})",
                    "these keys may not call GetBucketLocation, which the server never needs",
                    "to verify object_storage.region, run the check once with keys allowed "
                    "s3:GetBucketLocation",
                )
            except TRANSPORT_FAILURES as exc:
                return self.add("region", "WARN", f"GetBucketLocation: {transport_error(exc)}")
            actual = normalise_region(location.get("LocationConstraint"))
        verdict = diagnosis.region(self.o.region, actual, self.flavour)
        self.add("region", verdict.status, verdict.detail, verdict.cause, verdict.fix)
        return None
