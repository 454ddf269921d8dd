"""What to do instead when a store refuses a bucket setting, per store."""

from __future__ import annotations

from ..core.config import Settings
from .documents import CORS_METHODS
from .s3calls import Flavour


def cors_instead(flavour: Flavour, settings: Settings) -> str:
    origins = ",".join(settings.server.cors_allowed_origins)
    if flavour == "minio":
        return (
            "MinIO (community edition) has no bucket CORS API: set "
            f"MINIO_API_CORS_ALLOW_ORIGIN={origins} in the MinIO server's environment and "
            "restart it (it applies to every bucket); `pacs-ext storage check` then verifies it"
        )
    return (
        f"configure CORS on the store or on a proxy in front of it: origins {origins}, "
        f"methods {', '.join(CORS_METHODS)}, any header, expose ETag "
        "(`pacs-ext storage policy --cors` prints the rule as S3 JSON)"
    )


def storage_class_instead(flavour: Flavour, classes: list[str]) -> str:
    names = ", ".join(classes)
    keys = "bucket.lifecycle_ia_storage_class / bucket.lifecycle_archive_storage_class"
    days = "bucket.lifecycle_ia_days / bucket.lifecycle_archive_days = 0"
    if flavour == "ceph":
        first = classes[0]
        return (
            f"Ceph RGW moves objects only to storage classes of the bucket's placement target; "
            f"define {names} (`radosgw-admin zonegroup placement add --placement-id "
            f"default-placement --storage-class {first}` and `radosgw-admin zone placement add "
            f"--placement-id default-placement --storage-class {first} --data-pool POOL`) and "
            f"re-run init, or name an existing class in {keys}, or set {days}"
        )
    if flavour == "minio":
        return (
            f"MinIO transitions go to a remote tier: add one named {names} (`mc ilm tier add`) "
            f"and re-run init, or name an existing tier in {keys}, or set {days}"
        )
    return f"define {names} on the store and re-run init, or name another in {keys}, or set {days}"


def abort_uploads_instead(flavour: Flavour) -> str:
    text = (
        "the server aborts a group's unfinished uploads when the group is deleted; others "
        "stay until aborted"
    )
    if flavour == "minio":
        text = (
            "MinIO removes stale multipart uploads by itself (config api "
            "stale_uploads_expiry, 24 h by default); " + text
        )
    return text + "; or set bucket.lifecycle_abort_multipart_days = 0 to stop asking"


def encryption_instead(flavour: Flavour, settings: Settings) -> str:
    if flavour == "ceph":
        text = (
            "Ceph RGW applies SSE-S3 only with a KMS backend (rgw_crypt_sse_s3_backend = vault, "
            "Ceph 17+) and TLS; without one, encrypt the OSDs at rest (dmcrypt)"
        )
    elif flavour == "minio":
        text = "MinIO needs a KMS for SSE-S3 (KES, or MINIO_KMS_SECRET_KEY); configure one"
    else:
        text = "enable encryption at rest on the store"
    text += "; or set bucket.default_encryption = false to stop asking"
    if settings.object_storage.sse:
        text += (
            ". object_storage.sse = AES256 makes every signed upload ask for SSE-S3, which "
            "this store will refuse too: leave it empty until SSE works here"
        )
    return text


def public_access_instead(flavour: Flavour) -> str:
    name = "Ceph RGW" if flavour == "ceph" else "this store"
    return (
        f"{name} has no public access block API; the bucket stays private as long as no "
        "public ACL or bucket policy is added, so keep it that way"
    )


def refused_setting_instead(setting: str) -> str:
    return f"apply the {setting} setting with the store's own tools, or switch it off in [bucket]"


def create_bucket_fix(code: str, settings: Settings) -> str:
    if code == "InvalidLocationConstraint":
        return (
            f"set object_storage.region ({settings.object_storage.region}) to a region of this "
            "store (Ceph RGW: the zonegroup's api_name, or us-east-1 to send none)"
        )
    if code == "BucketAlreadyExists":
        return (
            "the name belongs to another account (bucket names are global on AWS): choose "
            "another object_storage.bucket_name"
        )
    return "check object_storage.bucket_name and region"
