"""`pacs-ext storage init`: bring the bucket to the configured state, one setting at a time.

Each setting is read, compared with what the configuration asks for, and written only when
it differs, so a second run makes no change. A store refusing a setting is reported with what
to do instead and the rest carries on; only real failures (refused credentials, unreachable
store, a bucket that cannot be created) count as errors.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from ..core.config import Settings
from . import advice, diagnosis
from . import documents as doc
from .bucket_versioning import Versioning
from .outcomes import Failure, Outcome, Refusal, Request
from .s3calls import (
    FLAVOUR_NAMES,
    TRANSPORT_FAILURES,
    Flavour,
    call,
    endpoint_name,
    error_code,
    flavour_of,
    is_refusal,
    response_headers,
    said,
    transport_error,
)

# Public access block before lifecycle: on Ceph RGW a BlockPublicAcls left on by someone
# refuses the storage-class probe's upload, and this run turns it off first.
SETTINGS = (
    "bucket",
    "cors",
    "public access block",
    "bucket policy",
    "lifecycle",
    "encryption",
    "versioning",
)
ADMIN_HINT = (
    "init needs an administrator's keys (the server's own least-privilege keys cannot "
    "configure a bucket): " + ", ".join(doc.INIT_ACTIONS)
)


@dataclass
class Provisioner:
    settings: Settings
    client: Any
    dry_run: bool = False
    # Also suspend versioning when it is on (`init --fix`); otherwise it is only reported.
    fix: bool = False
    requests: list[Request] = field(default_factory=list)
    flavour: Flavour = "s3-compatible"
    # False only in a dry run for a bucket that does not exist yet: nothing to read.
    exists: bool = True

    @property
    def bucket(self) -> str:
        return self.settings.object_storage.bucket_name

    async def run(self) -> list[Outcome]:
        self.flavour = flavour_of(self.settings)
        try:
            outcomes = [await self._bucket()]
        except Failure as f:
            skipped = "not attempted: the bucket is not usable (see above)"
            return [Outcome("bucket", "failed", f.detail)] + [
                Outcome(s, "skipped", skipped) for s in SETTINGS[1:]
            ]
        steps = (
            self._cors,
            self._public_access,
            self._bucket_policy,
            self._lifecycle,
            self._encryption,
        )
        for i, step in enumerate((*steps, self._versioning), start=1):
            try:
                outcomes.extend(await step())
            except Failure as f:
                outcomes.append(Outcome(SETTINGS[i], "failed", f.detail))
                if f.fatal:
                    outcomes += [
                        Outcome(s, "skipped", "not attempted after the failure above")
                        for s in SETTINGS[i + 1 :]
                    ]
                    break
        return outcomes

    # ---- calls ---------------------------------------------------------------------------

    async def read(self, operation: str, missing: str = "", **params: Any) -> dict[str, Any]:
        """A read; the error code `missing` (e.g. NoSuchCORSConfiguration) reads as {}."""
        if not self.exists:
            return {}
        try:
            return await call(self.client, operation, {"Bucket": self.bucket, **params})
        except ClientError as exc:
            if missing and error_code(exc)[0] == missing:
                return {}
            raise self._failure(exc, operation) from None
        except TRANSPORT_FAILURES as exc:
            raise self._unreachable(exc, operation) from None

    async def write(self, operation: str, **params: Any) -> None:
        request = Request(operation, {"Bucket": self.bucket, **params})
        self.requests.append(request)
        if self.dry_run:
            return
        try:
            await call(self.client, operation, request.params)
        except ClientError as exc:
            raise self._failure(exc, operation) from None
        except TRANSPORT_FAILURES as exc:
            raise self._unreachable(exc, operation) from None

    def _failure(self, exc: ClientError, operation: str) -> Exception:
        if is_refusal(exc):
            return Refusal(exc)
        code, status, _ = error_code(exc)
        if status == 403 or code in ("AccessDenied", "SignatureDoesNotMatch"):
            return Failure(f"{operation} was refused ({said(exc)}); {ADMIN_HINT}", fatal=True)
        return Failure(f"{operation} failed ({said(exc)})")

    def _unreachable(self, exc: BaseException, operation: str) -> Failure:
        return Failure(
            f"cannot reach {endpoint_name(self.settings)} for {operation}: "
            f"{transport_error(exc)}; check object_storage.endpoint and that the store runs",
            fatal=True,
        )

    def refused(self, setting: str, refusal: Refusal, instead: str) -> Outcome:
        who = FLAVOUR_NAMES[self.flavour]
        return Outcome(setting, "refused", f"{who} refused it ({refusal})", instead)

    # ---- settings ------------------------------------------------------------------------

    async def _bucket(self) -> Outcome:
        try:
            head = await call(self.client, "HeadBucket", {"Bucket": self.bucket})
            self.flavour = flavour_of(self.settings, response_headers(head))
            return Outcome("bucket", "unchanged", f"{self.bucket!r} exists")
        except ClientError as exc:
            status = error_code(exc)[1]
            self.flavour = flavour_of(self.settings, response_headers(exc))
            if status != 404:
                raise Failure(await self._forbidden(exc)) from None
        except TRANSPORT_FAILURES as exc:
            raise self._unreachable(exc, "HeadBucket") from None
        region = self.settings.object_storage.region
        params: dict[str, Any] = {"Bucket": self.bucket}
        if region != "us-east-1":  # us-east-1 is the default and refuses to be named
            params["CreateBucketConfiguration"] = {"LocationConstraint": region}
        self.requests.append(Request("CreateBucket", params))
        if self.dry_run:
            self.exists = False
            return Outcome("bucket", "changed", f"would create {self.bucket!r} in {region}")
        try:
            await call(self.client, "CreateBucket", params)
        except ClientError as exc:
            if error_code(exc)[0] == "BucketAlreadyOwnedByYou":  # created meanwhile
                return Outcome("bucket", "unchanged", f"{self.bucket!r} exists")
            raise self._create_failed(exc) from None
        except TRANSPORT_FAILURES as exc:
            raise self._unreachable(exc, "CreateBucket") from None
        return Outcome("bucket", "changed", f"created {self.bucket!r} in {region}")

    async def _forbidden(self, head: ClientError) -> str:
        """Why HeadBucket was refused: its 403 has no body, a listing's error has a code."""
        try:
            await call(self.client, "ListObjectsV2", {"Bucket": self.bucket, "MaxKeys": 1})
            code = ""
        except ClientError as exc:
            code = error_code(exc)[0]
        except TRANSPORT_FAILURES:
            code = ""
        if code in diagnosis.CREDENTIAL_CODES:
            d = diagnosis.credentials(code, self.settings)
            return f"HeadBucket on {self.bucket!r} was refused ({code}): {d.cause}; {d.fix}"
        return (
            f"HeadBucket on {self.bucket!r} was refused ({said(head)}): keys without access "
            f"to this bucket, or a bucket name owned by another account; {ADMIN_HINT}"
        )

    def _create_failed(self, exc: ClientError) -> Failure:
        code, status, _ = error_code(exc)
        fix = ADMIN_HINT if status == 403 else advice.create_bucket_fix(code, self.settings)
        return Failure(f"CreateBucket of {self.bucket!r} failed ({said(exc)}): {fix}")

    async def _cors(self) -> list[Outcome]:
        origins = self.settings.server.cors_allowed_origins
        if not self.settings.bucket.manage_cors:
            return [Outcome("cors", "skipped", "bucket.manage_cors = false")]
        if not origins:
            return [
                Outcome(
                    "cors",
                    "skipped",
                    "server.cors_allowed_origins is empty: no rule applied, so browsers on "
                    "other origins cannot upload; set it and re-run init",
                )
            ]
        try:
            current = (await self.read("GetBucketCors", "NoSuchCORSConfiguration")).get(
                "CORSRules", []
            )
            desired = doc.cors_configuration(self.settings)
            if doc.same_cors(current, desired["CORSRules"]):
                return [Outcome("cors", "unchanged", f"allows {', '.join(origins)}")]
            await self.write("PutBucketCors", CORSConfiguration=desired)
        except Refusal as r:
            return [self.refused("cors", r, advice.cors_instead(self.flavour, self.settings))]
        detail = f"allows {', '.join(origins)}"
        if current:
            detail += f" (replaced {len(current)} rule(s) that differed)"
        return [Outcome("cors", "changed", detail)]

    async def _lifecycle(self) -> list[Outcome]:
        try:
            current = (
                await self.read("GetBucketLifecycleConfiguration", "NoSuchLifecycleConfiguration")
            ).get("Rules", [])
            refused = await self._unknown_storage_classes()
        except Refusal as r:
            return [self.refused("lifecycle", r, advice.refused_setting_instead("lifecycle"))]
        extra: list[Outcome] = []
        if refused:
            extra.append(
                Outcome(
                    "lifecycle",
                    "refused",
                    f"{FLAVOUR_NAMES[self.flavour]} has no storage class "
                    f"{', '.join(sorted(refused))}: those transitions are left out",
                    advice.storage_class_instead(self.flavour, sorted(refused)),
                )
            )
        desired = doc.lifecycle_rules(self.settings, refused)
        try:
            return [await self._apply_lifecycle(current, desired), *extra]
        except Refusal as r:
            without_abort = doc.lifecycle_rules(self.settings, refused, abort=False)
            if without_abort == desired:
                instead = advice.refused_setting_instead("lifecycle")
                return [self.refused("lifecycle", r, instead), *extra]
            # MinIO documents AbortIncompleteMultipartUpload as unsupported in lifecycle
            # rules: keep the transitions and say how unfinished uploads go away there.
            abort = self.refused("lifecycle", r, advice.abort_uploads_instead(self.flavour))
            abort.detail += "; the rules without abort-incomplete-uploads are tried instead"
            if not without_abort:
                return [abort, *extra]
            try:
                return [await self._apply_lifecycle(current, without_abort), abort, *extra]
            except Refusal as again:
                instead = advice.refused_setting_instead("lifecycle")
                return [self.refused("lifecycle", again, instead), *extra]

    async def _apply_lifecycle(
        self, current: list[dict[str, Any]], desired: list[dict[str, Any]]
    ) -> Outcome:
        prefix = self.settings.object_storage.key_prefix
        ours = [r for r in current if doc.is_ours(r, desired, prefix)]
        others = [r for r in current if not doc.is_ours(r, desired, prefix)]
        if not desired:
            if not ours:
                return Outcome("lifecycle", "unchanged", "off (every part is switched off)")
            if others:
                await self.write(
                    "PutBucketLifecycleConfiguration", LifecycleConfiguration={"Rules": others}
                )
            else:
                await self.write("DeleteBucketLifecycle")
            return Outcome("lifecycle", "changed", f"removed the rules for {prefix}")
        summary = doc.describe_rules(desired)
        if doc.same_lifecycle_rules(ours, desired):
            return Outcome("lifecycle", "unchanged", summary)
        await self.write(
            "PutBucketLifecycleConfiguration", LifecycleConfiguration={"Rules": [*others, *desired]}
        )
        kept = f" (kept {len(others)} other rule(s))" if others else ""
        return Outcome("lifecycle", "changed", summary + kept)

    async def _unknown_storage_classes(self) -> frozenset[str]:
        """Classes a store other than AWS refuses (Ceph RGW stores a rule naming any class but
        only moves objects to classes it has): found out by a 1-byte upload in each class."""
        wanted = [t["StorageClass"] for t in doc.transitions(self.settings)]
        if not wanted or self.flavour == "aws" or self.dry_run or not self.exists:
            return frozenset()
        key = f"{self.settings.object_storage.key_prefix}.pacs-ext-init/{uuid.uuid4().hex}"
        unknown = set()
        for storage_class in wanted:
            try:
                await call(
                    self.client,
                    "PutObject",
                    {"Bucket": self.bucket, "Key": key, "Body": b"", "StorageClass": storage_class},
                )
            except ClientError as exc:
                if not is_refusal(exc):
                    raise Failure(
                        f"the storage class probe (a 1-byte PutObject of {key!r}) failed "
                        f"({said(exc)}); nothing was changed"
                    ) from None
                unknown.add(storage_class)
            except TRANSPORT_FAILURES as exc:
                raise self._unreachable(exc, "PutObject") from None
        if len(unknown) < len(wanted):
            try:
                await call(self.client, "DeleteObject", {"Bucket": self.bucket, "Key": key})
            except (ClientError, *TRANSPORT_FAILURES) as exc:
                raise Failure(f"could not delete the storage class probe {key!r}: {exc}") from None
        return frozenset(unknown)

    async def _encryption(self) -> list[Outcome]:
        if not self.settings.bucket.default_encryption:
            return [Outcome("encryption", "skipped", "bucket.default_encryption = false")]
        try:
            current = await self.read(
                "GetBucketEncryption", "ServerSideEncryptionConfigurationNotFoundError"
            )
        except Refusal:
            current = {}
        algorithms = doc.encryption_algorithms(current.get("ServerSideEncryptionConfiguration", {}))
        strong = [a for a in algorithms if a in doc.STRONG_ENOUGH]
        if strong:
            return [Outcome("encryption", "unchanged", f"default encryption {strong[0]}")]
        try:
            await self.write(
                "PutBucketEncryption",
                ServerSideEncryptionConfiguration=doc.encryption_configuration(),
            )
        except Refusal as r:
            instead = advice.encryption_instead(self.flavour, self.settings)
            return [self.refused("encryption", r, instead)]
        return [Outcome("encryption", "changed", "default encryption SSE-S3 (AES256)")]

    async def _public_access(self) -> list[Outcome]:
        name = "public access block"
        if not self.settings.bucket.block_public_access:
            return [Outcome(name, "skipped", "bucket.block_public_access = false")]
        desired = doc.public_access_block(ceph=self.flavour == "ceph")
        summary = "all public access blocked"
        if not desired["BlockPublicAcls"]:
            summary = (
                "public ACLs and policies made ineffective (IgnorePublicAcls, "
                "RestrictPublicBuckets); BlockPublicAcls and BlockPublicPolicy left off: with "
                "them Ceph RGW refuses every upload and every bucket policy"
            )
        try:
            current = (
                await self.read("GetPublicAccessBlock", "NoSuchPublicAccessBlockConfiguration")
            ).get("PublicAccessBlockConfiguration", {})
            if all(bool(current.get(k)) == v for k, v in desired.items()):
                return [Outcome(name, "unchanged", summary)]
            await self.write("PutPublicAccessBlock", PublicAccessBlockConfiguration=desired)
        except Refusal as r:
            return [self.refused(name, r, advice.public_access_instead(self.flavour))]
        return [Outcome(name, "changed", summary)]

    async def _bucket_policy(self) -> list[Outcome]:
        name = "bucket policy"
        if not self.settings.bucket.tls_only_policy:
            return [Outcome(name, "skipped", "bucket.tls_only_policy = false")]
        if not doc.tls_enforced(self.settings):
            return [
                Outcome(
                    name,
                    "skipped",
                    "the endpoint is plain http:// (development, or "
                    "object_storage.allow_insecure_endpoint): a TLS-only policy would lock the "
                    "server out; it is applied once the endpoint is https://",
                )
            ]
        try:
            raw = (await self.read("GetBucketPolicy", "NoSuchBucketPolicy")).get("Policy")
            current = json.loads(raw) if raw else {}
            if doc.has_tls_statement(current, self.settings):
                return [Outcome(name, "unchanged", "denies requests not made over TLS")]
            policy = doc.bucket_policy(self.settings, current)
            await self.write("PutBucketPolicy", Policy=json.dumps(policy))
        except Refusal as r:
            return [self.refused(name, r, advice.refused_setting_instead("bucket policy"))]
        kept = len(policy["Statement"]) - 1
        detail = "denies requests not made over TLS (aws:SecureTransport)"
        return [Outcome(name, "changed", detail + (f"; kept {kept} statement(s)" if kept else ""))]

    async def _versioning(self) -> list[Outcome]:
        return await Versioning(self).outcomes()
