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
from typing import Any, Literal

from botocore.exceptions import ClientError

from ..core.config import Settings
from . import advice, diagnosis
from . import documents as doc
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

Status = Literal["unchanged", "changed", "refused", "skipped", "warning", "failed"]
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
class Outcome:
    setting: str
    status: Status
    detail: str
    instead: str = ""


@dataclass
class Request:
    operation: str
    params: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"operation": self.operation, "params": self.params}


class Failure(Exception):
    """A real failure of one setting; fatal ones stop the run."""

    def __init__(self, detail: str, *, fatal: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fatal = fatal


class Refusal(Exception):
    def __init__(self, exc: ClientError) -> None:
        super().__init__(said(exc))
        self.exc = exc


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

    async def _read(self, operation: str, missing: str = "", **params: Any) -> dict[str, Any]:
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

    async def _write(self, operation: str, **params: Any) -> None:
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

    def _refused(self, setting: str, refusal: Refusal, instead: str) -> Outcome:
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
            current = (await self._read("GetBucketCors", "NoSuchCORSConfiguration")).get(
                "CORSRules", []
            )
            desired = doc.cors_configuration(self.settings)
            if doc.same_cors(current, desired["CORSRules"]):
                return [Outcome("cors", "unchanged", f"allows {', '.join(origins)}")]
            await self._write("PutBucketCors", CORSConfiguration=desired)
        except Refusal as r:
            return [self._refused("cors", r, advice.cors_instead(self.flavour, self.settings))]
        detail = f"allows {', '.join(origins)}"
        if current:
            detail += f" (replaced {len(current)} rule(s) that differed)"
        return [Outcome("cors", "changed", detail)]

    async def _lifecycle(self) -> list[Outcome]:
        try:
            current = (
                await self._read("GetBucketLifecycleConfiguration", "NoSuchLifecycleConfiguration")
            ).get("Rules", [])
            refused = await self._unknown_storage_classes()
        except Refusal as r:
            return [self._refused("lifecycle", r, advice.refused_setting_instead("lifecycle"))]
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
                return [self._refused("lifecycle", r, instead), *extra]
            # MinIO documents AbortIncompleteMultipartUpload as unsupported in lifecycle
            # rules: keep the transitions and say how unfinished uploads go away there.
            abort = self._refused("lifecycle", r, advice.abort_uploads_instead(self.flavour))
            abort.detail += "; the rules without abort-incomplete-uploads are tried instead"
            if not without_abort:
                return [abort, *extra]
            try:
                return [await self._apply_lifecycle(current, without_abort), abort, *extra]
            except Refusal as again:
                instead = advice.refused_setting_instead("lifecycle")
                return [self._refused("lifecycle", again, instead), *extra]

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
                await self._write(
                    "PutBucketLifecycleConfiguration", LifecycleConfiguration={"Rules": others}
                )
            else:
                await self._write("DeleteBucketLifecycle")
            return Outcome("lifecycle", "changed", f"removed the rules for {prefix}")
        summary = doc.describe_rules(desired)
        if doc.same_lifecycle_rules(ours, desired):
            return Outcome("lifecycle", "unchanged", summary)
        await self._write(
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
            current = await self._read(
                "GetBucketEncryption", "ServerSideEncryptionConfigurationNotFoundError"
            )
        except Refusal:
            current = {}
        algorithms = doc.encryption_algorithms(current.get("ServerSideEncryptionConfiguration", {}))
        strong = [a for a in algorithms if a in doc.STRONG_ENOUGH]
        if strong:
            return [Outcome("encryption", "unchanged", f"default encryption {strong[0]}")]
        try:
            await self._write(
                "PutBucketEncryption",
                ServerSideEncryptionConfiguration=doc.encryption_configuration(),
            )
        except Refusal as r:
            instead = advice.encryption_instead(self.flavour, self.settings)
            return [self._refused("encryption", r, instead)]
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
                await self._read("GetPublicAccessBlock", "NoSuchPublicAccessBlockConfiguration")
            ).get("PublicAccessBlockConfiguration", {})
            if all(bool(current.get(k)) == v for k, v in desired.items()):
                return [Outcome(name, "unchanged", summary)]
            await self._write("PutPublicAccessBlock", PublicAccessBlockConfiguration=desired)
        except Refusal as r:
            return [self._refused(name, r, advice.public_access_instead(self.flavour))]
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
            raw = (await self._read("GetBucketPolicy", "NoSuchBucketPolicy")).get("Policy")
            current = json.loads(raw) if raw else {}
            if doc.has_tls_statement(current, self.settings):
                return [Outcome(name, "unchanged", "denies requests not made over TLS")]
            policy = doc.bucket_policy(self.settings, current)
            await self._write("PutBucketPolicy", Policy=json.dumps(policy))
        except Refusal as r:
            return [self._refused(name, r, advice.refused_setting_instead("bucket policy"))]
        kept = len(policy["Statement"]) - 1
        detail = "denies requests not made over TLS (aws:SecureTransport)"
        return [Outcome(name, "changed", detail + (f"; kept {kept} statement(s)" if kept else ""))]

    async def _versioning(self) -> list[Outcome]:
        state = await self._versioning_state()
        if state.status != "warning" or not state.detail.startswith("Enabled") or not self.fix:
            return [state]
        try:
            await self._write(
                "PutBucketVersioning", VersioningConfiguration={"Status": "Suspended"}
            )
        except Refusal as r:
            return [self._refused("versioning", r, advice.refused_setting_instead("versioning"))]
        old = await self._noncurrent_versions()
        return [
            Outcome(
                "versioning",
                "changed",
                "suspended: new writes keep no old versions. " + old,
            )
        ]

    async def _noncurrent_versions(self) -> str:
        """What versioning left behind under the prefix (suspending deletes none of it)."""
        prefix = self.settings.object_storage.key_prefix
        count = size = 0
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        try:
            while True:
                page = await call(self.client, "ListObjectVersions", params)
                old = [v for v in page.get("Versions", ()) if not v.get("IsLatest")]
                count += len(old) + sum(1 for m in page.get("DeleteMarkers", ()))
                size += sum(int(v.get("Size") or 0) for v in old)
                if not page.get("IsTruncated"):
                    break
                params["KeyMarker"] = page.get("NextKeyMarker")
                params["VersionIdMarker"] = page.get("NextVersionIdMarker")
        except (ClientError, *TRANSPORT_FAILURES) as exc:
            return f"Old versions under {prefix} could not be counted ({exc})."
        gib = size / 1024**3
        return (
            f"{count} old version(s) and delete marker(s) under {prefix} remain, {size} bytes "
            f"(~{gib * 0.023:.2f} USD a month at S3 Standard's 0.023 USD/GiB); remove them with "
            "a lifecycle rule expiring noncurrent versions (NoncurrentVersionExpiration) or "
            "`aws s3api delete-object --version-id`"
        )

    async def _versioning_state(self) -> Outcome:
        # Changed only with --fix: suspending versioning on a bucket that has it is a decision
        # about the versions it keeps (replication, object lock), the operator's to make.
        if not self.exists:
            return Outcome("versioning", "unchanged", "off (new bucket)")
        try:
            status = (await self._read("GetBucketVersioning")).get("Status")
        except Refusal:
            return Outcome("versioning", "unchanged", "off (the store has no versioning API)")
        except Failure as f:
            return Outcome("versioning", "warning", f"could not read it: {f.detail}")
        if status == "Enabled":
            return Outcome(
                "versioning",
                "warning",
                "Enabled: left as is. Overwritten and deleted masks keep billable old "
                "versions; if nothing needs them (replication, object lock), re-run with "
                "`pacs-ext storage init --fix` to suspend it, or: aws s3api "
                f"put-bucket-versioning --bucket {self.bucket} --versioning-configuration "
                "Status=Suspended",
            )
        return Outcome("versioning", "unchanged", "suspended" if status else "off")
