"""The bucket documents the configuration asks for (CORS, lifecycle, encryption, public access
block, IAM policy), and comparisons that ignore what stores rewrite when they read them back."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..core.config import Settings

CORS_RULE_ID = "pacs-ext-viewers"
CORS_METHODS = ("GET", "PUT", "POST", "DELETE", "HEAD")
CORS_MAX_AGE = 3000
AES256 = "AES256"
# Encryption at least as strong as SSE-S3: a bucket already using one is left alone.
STRONG_ENOUGH = frozenset({"AES256", "aws:kms", "aws:kms:dsse"})
PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
# Everything the server does with its credentials (storage/s3.py, storage/s3_multipart.py):
# PutObject covers PUT, CreateMultipartUpload, UploadPart and CompleteMultipartUpload;
# GetObject covers GET and HEAD; DeleteObject covers DeleteObjects.
OBJECT_ACTIONS = (
    "s3:PutObject",
    "s3:GetObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
)
# What `storage init` itself needs: run it with an administrator's keys, not the server's.
INIT_ACTIONS = (
    "s3:CreateBucket",
    "s3:ListBucket",
    "s3:GetBucketCORS",
    "s3:PutBucketCORS",
    "s3:GetLifecycleConfiguration",
    "s3:PutLifecycleConfiguration",
    "s3:GetEncryptionConfiguration",
    "s3:PutEncryptionConfiguration",
    "s3:GetBucketPublicAccessBlock",
    "s3:PutBucketPublicAccessBlock",
    "s3:GetBucketVersioning",
)


def lifecycle_rule_id(prefix: str) -> str:
    return f"pacs-ext-{prefix}"


def cors_rule(origins: list[str]) -> dict[str, Any]:
    return {
        "ID": CORS_RULE_ID,
        "AllowedHeaders": ["*"],
        "AllowedMethods": list(CORS_METHODS),
        "AllowedOrigins": list(origins),
        "ExposeHeaders": ["ETag"],
        "MaxAgeSeconds": CORS_MAX_AGE,
    }


def cors_configuration(settings: Settings) -> dict[str, Any]:
    """For `aws s3api put-bucket-cors --cors-configuration file://cors.json` too."""
    return {"CORSRules": [cors_rule(settings.server.cors_allowed_origins)]}


def transitions(settings: Settings) -> list[dict[str, Any]]:
    b = settings.bucket
    wanted = [
        (b.lifecycle_ia_days, b.lifecycle_ia_storage_class),
        (b.lifecycle_archive_days, b.lifecycle_archive_storage_class),
    ]
    return [{"Days": days, "StorageClass": cls} for days, cls in wanted if days]


def lifecycle_rule(
    settings: Settings, refused_classes: frozenset[str] = frozenset(), *, abort: bool = True
) -> dict[str, Any] | None:
    """The rule for the key prefix; None when every part of it is switched off (or refused)."""
    prefix = settings.object_storage.key_prefix
    moves = [t for t in transitions(settings) if t["StorageClass"] not in refused_classes]
    abort_days = settings.bucket.lifecycle_abort_multipart_days if abort else 0
    if not moves and not abort_days:
        return None
    rule: dict[str, Any] = {
        "ID": lifecycle_rule_id(prefix),
        "Filter": {"Prefix": prefix},
        "Status": "Enabled",
    }
    if moves:
        rule["Transitions"] = moves
    if abort_days:
        rule["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": abort_days}
    return rule


def public_access_block(ceph: bool) -> dict[str, bool]:
    """All four switches on; on Ceph RGW only the two that make public ACLs and policies
    ineffective: measured on RGW 16.2, BlockPublicAcls refuses every upload (even one setting
    no ACL) and BlockPublicPolicy every bucket policy (even `storage policy --principal`)."""
    if ceph:
        return {**PUBLIC_ACCESS_BLOCK, "BlockPublicAcls": False, "BlockPublicPolicy": False}
    return dict(PUBLIC_ACCESS_BLOCK)


def encryption_configuration() -> dict[str, Any]:
    return {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": AES256}}]}


def iam_policy(settings: Settings, principal: str | None = None) -> dict[str, Any]:
    """Least privilege for the server's credentials: objects under the key prefix only.

    With `principal` it is a bucket policy (Ceph RGW, or a bucket owned by another account).
    """
    bucket = settings.object_storage.bucket_name
    prefix = settings.object_storage.key_prefix
    bucket_arn = f"arn:aws:s3:::{bucket}"
    statements: list[dict[str, Any]] = [
        {
            "Sid": "MaskObjects",
            "Effect": "Allow",
            "Action": list(OBJECT_ACTIONS),
            "Resource": f"{bucket_arn}/{prefix}*",
        },
        {
            # The server only ever lists under its prefix (verification, deletes).
            "Sid": "ListMaskPrefix",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": bucket_arn,
            "Condition": {"StringLike": {"s3:prefix": [f"{prefix}*"]}},
        },
        {
            # Unfinished uploads under the prefix, aborted when a group is deleted.
            "Sid": "ListMaskUploads",
            "Effect": "Allow",
            "Action": "s3:ListBucketMultipartUploads",
            "Resource": bucket_arn,
        },
    ]
    if settings.object_storage.endpoint:
        # Ceph RGW (16.x) checks a DeleteObjects request against the bucket's ARN before
        # checking each key against the statement above; this grants no object by itself.
        statements.append(
            {
                "Sid": "BatchDeleteOnS3Compatible",
                "Effect": "Allow",
                "Action": "s3:DeleteObject",
                "Resource": bucket_arn,
            }
        )
    if principal:
        for statement in statements:
            statement["Principal"] = {"AWS": [principal]}
    return {"Version": "2012-10-17", "Statement": statements}


def describe_rule(rule: dict[str, Any]) -> str:
    parts = [f"{t['StorageClass']} after {t['Days']} d" for t in rule.get("Transitions", [])]
    abort = rule.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation")
    if abort:
        parts.append(f"abort incomplete uploads after {abort} d")
    return f"{rule['Filter']['Prefix']}: {', '.join(parts)}"


# ---- comparisons of what was read back ---------------------------------------------------


def _upper_set(values: Any) -> frozenset[str]:
    return frozenset(str(v).upper() for v in values or ())


def _cors_key(rule: dict[str, Any]) -> tuple[Any, ...]:
    """A CORS rule without its ID, order-insensitive (RGW reorders the methods)."""
    return (
        frozenset(rule.get("AllowedOrigins") or ()),
        _upper_set(rule.get("AllowedMethods")),
        frozenset(h.lower() for h in rule.get("AllowedHeaders") or ()),
        frozenset(h.lower() for h in rule.get("ExposeHeaders") or ()),
        rule.get("MaxAgeSeconds"),
    )


def same_cors(current: list[dict[str, Any]], desired: list[dict[str, Any]]) -> bool:
    # Compared as multisets of keys: a frozenset's repr depends on the order its items went
    # in, so comparing reprs called equal rules different now and then ("cors changed").
    return Counter(map(_cors_key, current)) == Counter(map(_cors_key, desired))


def rule_prefix(rule: dict[str, Any]) -> str | None:
    """A lifecycle rule's prefix, in either shape (`Filter.Prefix` or legacy `Prefix`)."""
    flt = rule.get("Filter")
    if isinstance(flt, dict) and "Prefix" in flt and len(flt) == 1:
        return str(flt["Prefix"])
    if flt is None and "Prefix" in rule:
        return str(rule["Prefix"])
    return None


def _lifecycle_key(rule: dict[str, Any]) -> tuple[Any, ...]:
    """What a rule does, whatever order the store returns its transitions in (RGW: reversed)."""
    moves = frozenset(
        (t.get("Days"), t.get("Date"), t.get("StorageClass")) for t in rule.get("Transitions") or ()
    )
    abort = (rule.get("AbortIncompleteMultipartUpload") or {}).get("DaysAfterInitiation")
    return (
        rule_prefix(rule),
        rule.get("Status"),
        moves,
        abort,
        repr(rule.get("Expiration")),
        repr(rule.get("NoncurrentVersionTransitions")),
        repr(rule.get("NoncurrentVersionExpiration")),
    )


def same_lifecycle_rule(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    if a is None or b is None:
        return a is b
    return _lifecycle_key(a) == _lifecycle_key(b)


def is_ours(rule: dict[str, Any], desired: dict[str, Any] | None, prefix: str) -> bool:
    """Our lifecycle rule: by ID, or one that does exactly what ours does (set by hand)."""
    if rule.get("ID") == lifecycle_rule_id(prefix):
        return True
    return desired is not None and _lifecycle_key(rule) == _lifecycle_key(desired)


def encryption_algorithms(config: dict[str, Any]) -> list[str]:
    rules = config.get("Rules") or ()
    return [
        str((r.get("ApplyServerSideEncryptionByDefault") or {}).get("SSEAlgorithm") or "")
        for r in rules
    ]


def normalise_region(location: str | None) -> str:
    """GetBucketLocation's answer as a region name: empty means us-east-1, EU eu-west-1."""
    if not location:
        return "us-east-1"
    return "eu-west-1" if location == "EU" else location
