"""The bucket documents the configuration asks for (CORS, lifecycle, encryption, public access
block, IAM and bucket policies), and comparisons that ignore what stores rewrite when they read
them back. deploy/aws/cloudformation.yaml is generated from these (cloudformation.py)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..core.config import TRANSITION_TAG, Settings

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
    "s3:PutBucketVersioning",
    "s3:ListBucketVersions",
    "s3:GetBucketPolicy",
    "s3:PutBucketPolicy",
)
TLS_SID = "DenyInsecureTransport"


def lifecycle_rule_id(prefix: str) -> str:
    """The rule aborting unfinished uploads (and, before the tag filter, the only rule)."""
    return f"pacs-ext-{prefix}"


def transition_rule_id(prefix: str) -> str:
    return f"pacs-ext-{prefix}transitions"


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


def lifecycle_rules(
    settings: Settings, refused_classes: frozenset[str] = frozenset(), *, abort: bool = True
) -> list[dict[str, Any]]:
    """Our rules for the key prefix ([] when every part is switched off or refused).

    Transitions apply only to objects tagged TRANSITION_TAG, which client uploads carry
    (their signed PUT binds the tag): lifecycle filters cannot exclude a name, and metadata.json
    must stay readable at once (downloads list groups, `reindex` reads it after a disaster).
    Abort-incomplete-uploads cannot be combined with a tag filter, hence a second rule."""
    prefix = settings.object_storage.key_prefix
    moves = [t for t in transitions(settings) if t["StorageClass"] not in refused_classes]
    abort_days = settings.bucket.lifecycle_abort_multipart_days if abort else 0
    rules: list[dict[str, Any]] = []
    if moves:
        key, value = TRANSITION_TAG
        rules.append(
            {
                "ID": transition_rule_id(prefix),
                "Filter": {"And": {"Prefix": prefix, "Tags": [{"Key": key, "Value": value}]}},
                "Status": "Enabled",
                "Transitions": moves,
            }
        )
    if abort_days:
        rules.append(
            {
                "ID": lifecycle_rule_id(prefix),
                "Filter": {"Prefix": prefix},
                "Status": "Enabled",
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": abort_days},
            }
        )
    return rules


def public_access_block(ceph: bool) -> dict[str, bool]:
    """All four switches on; on Ceph RGW only the two that make public ACLs and policies
    ineffective: measured on RGW 16.2, BlockPublicAcls refuses every upload (even one setting
    no ACL) and BlockPublicPolicy every bucket policy (even `storage policy --principal`)."""
    if ceph:
        return {**PUBLIC_ACCESS_BLOCK, "BlockPublicAcls": False, "BlockPublicPolicy": False}
    return dict(PUBLIC_ACCESS_BLOCK)


def encryption_configuration() -> dict[str, Any]:
    return {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": AES256}}]}


def object_actions(settings: Settings) -> list[str]:
    actions = list(OBJECT_ACTIONS)
    if settings.bucket.transitions_on:
        actions.append("s3:PutObjectTagging")  # uploads carry the transition tag
    if settings.bucket.restore_needed:
        actions.append("s3:RestoreObject")  # a download of an archived mask restores it
    return actions


def tls_enforced(settings: Settings) -> bool:
    """The TLS-only deny goes into policies only when the server itself talks TLS: over an
    http:// endpoint (development, or allow_insecure_endpoint) it would lock the server out."""
    o = settings.object_storage
    plain = o.endpoint.startswith("http://") or o.public_endpoint.startswith("http://")
    return settings.bucket.tls_only_policy and not plain


def tls_statement(settings: Settings, *, principal: bool) -> dict[str, Any]:
    """Deny every request to the bucket not made over TLS (aws:SecureTransport)."""
    bucket_arn = f"arn:aws:s3:::{settings.object_storage.bucket_name}"
    statement: dict[str, Any] = {"Sid": TLS_SID, "Effect": "Deny"}
    if principal:
        statement["Principal"] = "*"
    return statement | {
        "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def bucket_policy(settings: Settings, current: dict[str, Any] | None = None) -> dict[str, Any]:
    """The bucket's policy with our TLS-only statement: other statements are kept."""
    others = [s for s in (current or {}).get("Statement", []) if s.get("Sid") != TLS_SID]
    return {
        "Version": (current or {}).get("Version", "2012-10-17"),
        "Statement": [*others, tls_statement(settings, principal=True)],
    }


def has_tls_statement(policy: dict[str, Any], settings: Settings) -> bool:
    wanted = tls_statement(settings, principal=True)
    return any(_statement_key(s) == _statement_key(wanted) for s in policy.get("Statement", []))


def _statement_key(s: dict[str, Any]) -> tuple[Any, ...]:
    def as_set(v: Any) -> frozenset[str]:
        return frozenset([v] if isinstance(v, str) else v or ())

    principal = s.get("Principal")
    if isinstance(principal, dict) and principal.get("AWS") in ("*", ["*"]):
        principal = "*"
    return (
        s.get("Effect"),
        repr(principal),
        as_set(s.get("Action")),
        as_set(s.get("Resource")),
        repr(s.get("Condition")),
    )


def iam_policy(settings: Settings, principal: str | None = None) -> dict[str, Any]:
    """Least privilege for the server's credentials: objects under the key prefix only, and
    (when the server talks TLS) nothing over plain HTTP.

    With `principal` it is a bucket policy (Ceph RGW, or a bucket owned by another account).
    """
    bucket = settings.object_storage.bucket_name
    prefix = settings.object_storage.key_prefix
    bucket_arn = f"arn:aws:s3:::{bucket}"
    statements: list[dict[str, Any]] = [
        {
            "Sid": "MaskObjects",
            "Effect": "Allow",
            "Action": object_actions(settings),
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
    if tls_enforced(settings):
        statements.append(tls_statement(settings, principal=bool(principal)))
    return {"Version": "2012-10-17", "Statement": statements}


def describe_rules(rules: list[dict[str, Any]]) -> str:
    parts = []
    for rule in rules:
        prefix, tags = rule_filter(rule)
        scope = (prefix or "") + "".join(f" tagged {k}={v}" for k, v in sorted(tags))
        moves = [f"{t['StorageClass']} after {t['Days']} d" for t in rule.get("Transitions", [])]
        abort = rule.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation")
        if abort:
            moves.append(f"abort incomplete uploads after {abort} d")
        parts.append(f"{scope}: {', '.join(moves)}")
    return "; ".join(parts)


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


def rule_filter(rule: dict[str, Any]) -> tuple[str | None, frozenset[tuple[str, str]]]:
    """A lifecycle rule's prefix and tags, whatever shape the store wrote them in:
    `Filter.Prefix`, `Filter.And{Prefix, Tags}`, Ceph RGW's `Filter{Prefix, Tag}`, or the
    legacy top-level `Prefix`. A size filter makes it another rule: its prefix is None."""
    flt = rule.get("Filter")
    if flt is None:
        return (str(rule["Prefix"]) if "Prefix" in rule else None), frozenset()
    if not isinstance(flt, dict):
        return None, frozenset()
    inner = flt.get("And", flt)
    if not isinstance(inner, dict) or set(inner) - {"Prefix", "Tags", "Tag"}:
        return None, frozenset()
    tags = [*(inner.get("Tags") or ()), *([inner["Tag"]] if inner.get("Tag") else [])]
    pairs = frozenset((str(t.get("Key")), str(t.get("Value"))) for t in tags)
    return str(inner.get("Prefix", "")), pairs


def _lifecycle_key(rule: dict[str, Any]) -> tuple[Any, ...]:
    """What a rule does, whatever order the store returns its transitions in (RGW: reversed)."""
    moves = frozenset(
        (t.get("Days"), t.get("Date"), t.get("StorageClass")) for t in rule.get("Transitions") or ()
    )
    abort = (rule.get("AbortIncompleteMultipartUpload") or {}).get("DaysAfterInitiation")
    return (
        rule_filter(rule),
        rule.get("Status"),
        moves,
        abort,
        repr(rule.get("Expiration")),
        repr(rule.get("NoncurrentVersionTransitions")),
        repr(rule.get("NoncurrentVersionExpiration")),
    )


def same_lifecycle_rules(current: list[dict[str, Any]], desired: list[dict[str, Any]]) -> bool:
    return Counter(map(_lifecycle_key, current)) == Counter(map(_lifecycle_key, desired))


def is_ours(rule: dict[str, Any], desired: list[dict[str, Any]], prefix: str) -> bool:
    """One of our lifecycle rules: by ID, or one that does exactly what one of ours does."""
    if rule.get("ID") in (lifecycle_rule_id(prefix), transition_rule_id(prefix)):
        return True
    return any(_lifecycle_key(rule) == _lifecycle_key(d) for d in desired)


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
