"""`pacs-ext storage check`: real calls against the configured storage, one verdict per step.

Uploads and downloads go through the server's own signer and the URLs clients would get, so
the check sees what a viewer will see. After a failure that makes the rest meaningless (bad
credentials, missing bucket) the remaining steps are SKIP with the reason.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from botocore.exceptions import ClientError

from ..config import Settings
from ..storage.base import ObjectNotFound, StorageError, UploadSpec
from ..storage.s3 import S3Storage
from . import diagnosis
from .diagnosis import INIT, NTP, POLICY
from .documents import normalise_region
from .s3calls import (
    TRANSPORT_FAILURES,
    Flavour,
    call,
    endpoint_name,
    error_code,
    flavour_of,
    response_headers,
    said,
    transport_error,
)

Status = Literal["PASS", "WARN", "FAIL", "SKIP"]
SKEW_WARN = 300.0  # a 5-minute skew already moves a 10-minute URL's window by half
SKEW_FAIL = 900.0  # SigV4: stores refuse requests more than 15 minutes off
PROBE_TTL = 120
FOREIGN_ORIGIN = "https://pacs-ext-check.invalid"
ROUNDTRIP = ("presigned PUT", "presigned GET", "delete", "sse")


@dataclass
class Step:
    name: str
    status: Status
    detail: str
    cause: str = ""
    fix: str = ""

    def as_json(self) -> dict[str, str]:
        return asdict(self)


class Doctor:
    def __init__(self, settings: Settings, storage: S3Storage, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self.o = settings.object_storage
        self.storage = storage
        self.http = http
        self.steps: list[Step] = []
        self.blocked = ""  # why the steps still to come cannot run
        self.flavour: Flavour = flavour_of(settings)
        self.client: Any = None
        self.store_date: float | None = None
        self.local_mid = 0.0

    def add(self, name: str, status: Status, detail: str, cause: str = "", fix: str = "") -> None:
        self.steps.append(Step(name, status, detail, cause, fix))

    def skip(self, *names: str) -> None:
        for name in names:
            self.add(name, "SKIP", f"skipped: {self.blocked}")

    async def run(self) -> list[Step]:
        await self.credentials_and_bucket()
        self.clock()
        await self.region()
        await self.cors()
        await self.roundtrip()
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

    # ---- browser-facing: CORS, signed PUT and GET ----------------------------------------

    def probe_spec(self, key: str, body: bytes) -> UploadSpec:
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()  # noqa: S324
        return UploadSpec(key=key, content_type="text/plain", size=len(body), md5_b64=md5)

    async def cors(self) -> None:
        origins = self.settings.server.cors_allowed_origins
        names = [f"cors {o}" for o in origins] or ["cors"]
        if self.blocked:
            return self.skip(*names, "cors foreign origin")
        key = f"{self.o.key_prefix}pacs-ext-check/preflight.txt"
        signed = self.storage.sign_upload(self.probe_spec(key, b"-"), PROBE_TTL)
        asked = sorted(h.lower() for h in signed.headers if h.lower() != "content-length")
        if not origins:
            self.add(
                "cors",
                "WARN",
                "server.cors_allowed_origins is empty: browser viewers on other origins "
                "cannot upload (scripts and pipelines are not affected)",
                fix="list the viewers' origins in server.cors_allowed_origins, then "
                "`pacs-ext storage init`",
            )
        for origin in origins:
            why = await self.preflight_refusal(signed.url, origin, asked)
            if why is None:
                self.add(f"cors {origin}", "PASS", f"preflight allows PUT with {','.join(asked)}")
            elif why:
                self.add(
                    f"cors {origin}",
                    "FAIL",
                    f"preflight refused: {why}",
                    f"the bucket's CORS rules do not let {origin} upload",
                    diagnosis.cors_refused(origin, self.flavour),
                )
        why = await self.preflight_refusal(signed.url, FOREIGN_ORIGIN, asked, name="foreign")
        if why == "":
            return None
        if why is not None:
            return self.add("cors foreign origin", "PASS", f"{FOREIGN_ORIGIN} refused ({why})")
        return self.add(
            "cors foreign origin",
            "FAIL",
            f"preflight from {FOREIGN_ORIGIN} was allowed",
            "the bucket lets origins outside server.cors_allowed_origins upload",
            diagnosis.cors_too_open(self.flavour),
        )

    async def preflight_refusal(
        self, url: str, origin: str, asked: list[str], name: str = ""
    ) -> str | None:
        """None when a browser would go on to PUT; else why not ("" once reported as FAIL)."""
        try:
            r = await self.http.options(
                url,
                headers={
                    "Origin": origin,
                    "Access-Control-Request-Method": "PUT",
                    "Access-Control-Request-Headers": ",".join(asked),
                },
            )
        except httpx.HTTPError as exc:
            d = diagnosis.unreachable("CORS preflight", urlsplit(url).netloc, public=True)
            step = "cors foreign origin" if name else f"cors {origin}"
            self.add(step, "FAIL", transport_error(exc), d.cause, d.fix)
            return ""
        allow_origin = r.headers.get("access-control-allow-origin")
        if r.status_code >= 400 or not allow_origin:
            return f"HTTP {r.status_code} without Access-Control-Allow-Origin"
        if allow_origin not in (origin, "*"):
            return f"Access-Control-Allow-Origin is {allow_origin!r}"
        methods = {
            m.strip().upper() for m in r.headers.get("access-control-allow-methods", "").split(",")
        }
        if not methods & {"PUT", "*"}:
            return "PUT is not an allowed method"
        allowed = {
            h.strip().lower() for h in r.headers.get("access-control-allow-headers", "").split(",")
        }
        missing = [h for h in asked if "*" not in allowed and h not in allowed]
        if missing:
            return f"headers not allowed: {', '.join(missing)}"
        return None

    async def roundtrip(self) -> None:
        if self.blocked:
            return self.skip(*ROUNDTRIP)
        key = f"{self.o.key_prefix}pacs-ext-check/{uuid.uuid4().hex}.txt"
        body = f"pacs-ext storage check {datetime.now(UTC).isoformat()}\n".encode()
        stored = await self.put(key, body)
        if not stored:
            self.blocked = "the probe upload failed"
            return self.skip(*ROUNDTRIP[1:])
        try:
            await self.get(key, body)
            encryption = await self.stored_encryption(key)
        finally:
            await self.delete(key)
        self.sse(encryption)
        return None

    async def put(self, key: str, body: bytes) -> bool:
        signed = self.storage.sign_upload(self.probe_spec(key, body), PROBE_TTL)
        headers = dict(signed.headers)
        origins = self.settings.server.cors_allowed_origins
        if origins:
            headers["Origin"] = origins[0]
        try:
            r = await self.http.put(signed.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            d = diagnosis.unreachable("PUT", urlsplit(signed.url).netloc, public=True)
            self.add("presigned PUT", "FAIL", transport_error(exc), d.cause, d.fix)
            return False
        if not r.is_success:
            code = diagnosis.xml_code(r.content)
            d = diagnosis.upload(code, r.status_code, self.settings, self.flavour)
            detail = f"PUT {key} refused: HTTP {r.status_code} {code}".rstrip()
            self.add("presigned PUT", "FAIL", detail, d.cause, d.fix)
            return False
        detail = f"PUT {key} ({len(body)} bytes, Content-MD5 bound) with the server's signed URL"
        exposed = r.headers.get("access-control-expose-headers", "").lower()
        if origins and "etag" not in exposed and "*" not in exposed:
            self.add(
                "presigned PUT",
                "WARN",
                detail + f"; the response does not expose ETag to {origins[0]}",
                "browsers cannot read part ETags of multipart uploads",
                f"{INIT} (its CORS rule exposes ETag)",
            )
        else:
            self.add("presigned PUT", "PASS", detail)
        return True

    async def get(self, key: str, body: bytes) -> None:
        signed = self.storage.sign_download(key, PROBE_TTL)
        try:
            r = await self.http.get(signed.url)
        except httpx.HTTPError as exc:
            d = diagnosis.unreachable("GET", urlsplit(signed.url).netloc, public=True)
            return self.add("presigned GET", "FAIL", transport_error(exc), d.cause, d.fix)
        if not r.is_success:
            code = diagnosis.xml_code(r.content)
            d = diagnosis.upload(code, r.status_code, self.settings, self.flavour)
            detail = f"GET {key} refused: HTTP {r.status_code} {code}".rstrip()
            return self.add("presigned GET", "FAIL", detail, d.cause, d.fix)
        if r.content != body:
            return self.add(
                "presigned GET",
                "FAIL",
                f"GET {key} returned {len(r.content)} bytes that differ from the upload",
                "something between here and the store alters bodies (a proxy, a cache)",
                "check proxies and caches in front of the store",
            )
        return self.add("presigned GET", "PASS", f"GET {key}: the same {len(body)} bytes")

    async def stored_encryption(self, key: str) -> str | None:
        """x-amz-server-side-encryption of the stored probe; None if it cannot be read."""
        try:
            head = await call(self.client, "HeadObject", {"Bucket": self.o.bucket_name, "Key": key})
        except (ClientError, *TRANSPORT_FAILURES):
            return None
        return str(head.get("ServerSideEncryption") or "")

    async def delete(self, key: str) -> None:
        try:
            await self.storage.delete_many([key])
            try:
                await self.storage.head(key)
            except ObjectNotFound:
                return self.add(
                    "delete", "PASS", f"deleted {key} (DeleteObjects, as the server does)"
                )
            return self.add(
                "delete",
                "FAIL",
                f"{key} is still there after DeleteObjects",
                "the store accepted the delete but kept the object",
                "see the store's logs",
            )
        except StorageError as exc:
            fix = POLICY
            if self.flavour == "ceph":
                fix += " (Ceph RGW checks DeleteObjects against the bucket's ARN too: its "
                fix += "statement BatchDeleteOnS3Compatible covers that)"
            return self.add(
                "delete",
                "FAIL",
                str(exc),
                f"these keys may not delete under {self.o.key_prefix}; the probe object "
                f"{key} is left behind",
                fix,
            )

    def sse(self, encryption: str | None) -> None:
        shown = "unknown (HeadObject failed)" if encryption is None else (encryption or "none")
        if not self.o.sse:
            return self.add(
                "sse",
                "PASS",
                f"not configured (object_storage.sse is empty); the probe was stored with "
                f"encryption: {shown}",
            )
        if encryption == self.o.sse:
            return self.add("sse", "PASS", f"the probe was stored with {encryption}")
        return self.add(
            "sse",
            "FAIL",
            f"object_storage.sse = {self.o.sse}, but the probe was stored with encryption: {shown}",
            "the store accepted the SSE header without encrypting",
            "enable SSE-S3 on the store, or leave object_storage.sse empty",
        )
