"""Likely cause and fix for each way a storage check can fail."""

from __future__ import annotations

import re
from typing import Literal, NamedTuple

from ..core.config import Settings
from .s3calls import Flavour

INIT = "run `pacs-ext storage init` with an administrator's keys"
POLICY = "grant these keys the policy printed by `pacs-ext storage policy`"
NTP = "synchronise this machine's clock (NTP: `timedatectl set-ntp true`, chrony)"
# Error codes that say the credentials themselves were refused.
CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "RequestTimeTooSkewed",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
    }
)
_CODE = re.compile(rb"<Code>([^<]{1,100})</Code>")


class Diagnosis(NamedTuple):
    cause: str
    fix: str


def xml_code(body: bytes) -> str:
    """The <Code> of an S3 XML error body, or ""."""
    match = _CODE.search(body[:4096])
    return match.group(1).decode(errors="replace") if match else ""


def credentials(code: str, settings: Settings) -> Diagnosis:
    access = settings.object_storage.access_key or "(from the AWS credential chain)"
    if code == "InvalidAccessKeyId":
        return Diagnosis(
            f"the store does not know access key {access}",
            "set object_storage.access_key and secret_key to a key pair of this store",
        )
    if code == "SignatureDoesNotMatch":
        return Diagnosis(
            f"the secret key does not belong to access key {access} (or a proxy between "
            "here and the store rewrites requests)",
            "set object_storage.secret_key to this access key's secret",
        )
    if code == "RequestTimeTooSkewed":
        return Diagnosis("this machine's clock is more than 15 min off the store's", NTP)
    if code in ("ExpiredToken", "InvalidToken", "TokenRefreshRequired"):
        return Diagnosis(
            "the temporary credentials (session token) have expired or are invalid",
            "renew object_storage.session_token, or leave the keys empty to use the AWS "
            "credential chain, which refreshes them",
        )
    return Diagnosis(
        f"the store refused the credentials ({code})",
        "check object_storage.access_key, secret_key and session_token",
    )


def upload(code: str, status: int, settings: Settings, flavour: Flavour) -> Diagnosis:
    """A signed PUT or GET refused: `code` is the store's <Code>, if it sent one."""
    o = settings.object_storage
    if code == "SignatureDoesNotMatch":
        return Diagnosis(
            "the store computed another signature for the URL the server signed: wrong "
            "secret key, or a host other than the signed one (a proxy rewriting Host, or "
            "object_storage.public_endpoint not being the address clients use)",
            "check object_storage.secret_key, endpoint and public_endpoint",
        )
    if code in ("AuthorizationHeaderMalformed", "PermanentRedirect", "IllegalLocationConstraint"):
        return Diagnosis(
            f"the URL is signed for region {o.region!r}, not the bucket's",
            "set object_storage.region to the bucket's region (see the region step)",
        )
    if code in ("RequestTimeTooSkewed", "RequestExpired"):
        return Diagnosis("the URL's time is outside what the store accepts (clock skew)", NTP)
    sse_refused = code in ("InvalidRequest", "NotImplemented", "InvalidArgument")
    if o.sse and (sse_refused or (flavour == "ceph" and status in (400, 403))):
        return Diagnosis(
            "object_storage.sse = AES256 makes every signed upload ask for SSE-S3, which this "
            "store refuses (Ceph RGW: without TLS and a KMS)",
            "leave object_storage.sse empty for this store, or enable SSE-S3 on it",
        )
    if status == 403 and flavour == "ceph":
        return Diagnosis(
            f"these keys may not write or read under {o.key_prefix} ({code or 'HTTP 403'}), "
            "or the bucket's public access block has BlockPublicAcls on, with which Ceph RGW "
            "refuses every upload",
            f"{POLICY}; {INIT} (on Ceph RGW it turns BlockPublicAcls off)",
        )
    if status == 403:
        return Diagnosis(
            f"these keys may not write or read under {o.key_prefix} ({code or 'HTTP 403'})",
            POLICY,
        )
    if status in (301, 307):
        return Diagnosis(
            "the store redirects: the bucket is in another region or needs another endpoint",
            "set object_storage.region (and endpoint) to the bucket's",
        )
    return Diagnosis(f"the store answered HTTP {status} {code}".strip(), "see the store's logs")


def unreachable(what: str, url_host: str, public: bool) -> Diagnosis:
    if public:
        return Diagnosis(
            f"{what}: cannot reach {url_host}, the address signed into URLs for clients",
            "object_storage.public_endpoint (or endpoint) must be reachable by clients; if "
            "this machine is not on their network, run the check where they are",
        )
    return Diagnosis(
        f"{what}: cannot reach {url_host}",
        "check object_storage.endpoint, that the store runs, DNS, TLS and firewalls",
    )


def cors_refused(origin: str, flavour: Flavour) -> str:
    if flavour == "minio":
        return f"add {origin} to MINIO_API_CORS_ALLOW_ORIGIN on the MinIO server, restart it"
    return f"{INIT} (CORS for server.cors_allowed_origins), or add {origin} to the CORS rule"


def cors_too_open(flavour: Flavour) -> str:
    if flavour == "minio":
        return (
            "MinIO allows every origin unless MINIO_API_CORS_ALLOW_ORIGIN is set: set it to "
            "server.cors_allowed_origins on the MinIO server"
        )
    return f"{INIT}: it replaces the bucket's CORS rules with one for server.cors_allowed_origins"


class RegionVerdict(NamedTuple):
    status: Literal["PASS", "WARN", "FAIL"]
    detail: str
    cause: str = ""
    fix: str = ""


def region(configured: str, actual: str, flavour: Flavour) -> RegionVerdict:
    """The bucket's region (normalised) against object_storage.region."""
    if actual == configured:
        return RegionVerdict("PASS", f"the bucket is in {actual}, as configured")
    if flavour == "ceph":
        # Measured on Ceph 16.2: RGW never compares a signature's region with its zonegroup;
        # only CreateBucket checks the LocationConstraint.
        if actual == "default":
            return RegionVerdict(
                "PASS",
                f"Ceph RGW default zonegroup; RGW does not check the signing region, so "
                f"{configured!r} works",
            )
        return RegionVerdict(
            "WARN",
            f"Ceph RGW zonegroup {actual!r}, configured {configured!r}",
            "RGW does not check the signing region, but init sends the configured one as "
            "LocationConstraint when it creates a bucket",
            f"set object_storage.region = {actual!r}",
        )
    return RegionVerdict(
        "FAIL",
        f"the bucket is in {actual}, object_storage.region is {configured}",
        "URLs signed for another region are refused (AuthorizationHeaderMalformed) or "
        "redirected, which browsers do not follow for uploads",
        f"set object_storage.region = {actual!r}",
    )
