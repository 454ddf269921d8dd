"""The versioning step of `storage init`: reported, and suspended only with `--fix`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from . import advice
from .outcomes import Failure, Outcome, Refusal
from .s3calls import TRANSPORT_FAILURES, call

if TYPE_CHECKING:
    from .bucket_init import Provisioner


class Versioning:
    """Reads and (with the provisioner's `fix`) suspends versioning through its calls."""

    def __init__(self, provisioner: Provisioner) -> None:
        self.p = provisioner

    async def outcomes(self) -> list[Outcome]:
        state = await self.state()
        if state.status != "warning" or not state.detail.startswith("Enabled") or not self.p.fix:
            return [state]
        try:
            await self.p.write(
                "PutBucketVersioning", VersioningConfiguration={"Status": "Suspended"}
            )
        except Refusal as r:
            return [self.p.refused("versioning", r, advice.refused_setting_instead("versioning"))]
        old = await self.noncurrent_versions()
        return [
            Outcome(
                "versioning",
                "changed",
                "suspended: new writes keep no old versions. " + old,
            )
        ]

    async def noncurrent_versions(self) -> str:
        """What versioning left behind under the prefix (suspending deletes none of it)."""
        prefix = self.p.settings.object_storage.key_prefix
        count = size = 0
        params: dict[str, Any] = {"Bucket": self.p.bucket, "Prefix": prefix}
        try:
            while True:
                page = await call(self.p.client, "ListObjectVersions", params)
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

    async def state(self) -> Outcome:
        # Changed only with --fix: suspending versioning on a bucket that has it is a decision
        # about the versions it keeps (replication, object lock), the operator's to make.
        if not self.p.exists:
            return Outcome("versioning", "unchanged", "off (new bucket)")
        try:
            status = (await self.p.read("GetBucketVersioning")).get("Status")
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
                f"put-bucket-versioning --bucket {self.p.bucket} --versioning-configuration "
                "Status=Suspended",
            )
        return Outcome("versioning", "unchanged", "suspended" if status else "off")
