"""The browser-facing steps of `pacs-ext storage check`: CORS preflights, then a PUT and GET
through the server's own signed URLs, a delete as the server does it, and SSE."""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
from botocore.exceptions import ClientError

from ..storage.base import ObjectNotFound, StorageError, UploadSpec
from . import diagnosis
from .diagnosis import INIT, POLICY
from .doctor_run import CheckRun
from .s3calls import TRANSPORT_FAILURES, call, transport_error

PROBE_TTL = 120
FOREIGN_ORIGIN = "https://pacs-ext-check.invalid"
ROUNDTRIP = ("presigned PUT", "presigned GET", "delete", "sse")


class ObjectProbes(CheckRun):
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
                self.allowed_origin = self.allowed_origin or origin
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
        origin = self.allowed_origin
        if origin:  # as the browser sends it; the answer must expose ETag
            headers["Origin"] = origin
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
        if origin and "etag" not in exposed and "*" not in exposed:
            self.add(
                "presigned PUT",
                "WARN",
                detail + f"; the response does not expose ETag to {origin}",
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
