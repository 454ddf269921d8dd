"""SigV4Presigner against botocore as the oracle: same inputs, same clock, the same URL string.

Keys, headers, query values and clocks are drawn from a seeded generator; a failure names the
seed of its case, so `case_for(seed)` rebuilds it exactly.
"""

from __future__ import annotations

import base64
import datetime as dt
import random
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal
from unittest import mock
from urllib.parse import parse_qsl, quote, urlsplit

import botocore.session
import pytest
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from pacs_ext.storage.base import InvalidObjectKey
from pacs_ext.storage.s3.sigv4 import MAX_EXPIRES, SigV4Presigner

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
# Shaped like an STS token: long, base64 with "/", "+" and "=".
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD+abc/def+ghi=="
BUCKET = "pacs-ext-test"
NOW = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Target:
    region: str
    endpoint: str
    style: Literal["path", "virtual"]
    # botocore's choice of host for us-east-1 when no endpoint is given.
    us_east_1: Literal["legacy", "regional"] = "legacy"


TARGETS = [
    Target("us-east-1", "", "virtual"),
    Target("us-east-1", "", "path"),
    Target("us-east-1", "https://s3.us-east-1.amazonaws.com", "virtual", "regional"),
    Target("eu-west-1", "https://s3.eu-west-1.amazonaws.com", "virtual"),
    Target("eu-west-1", "", "path"),
    Target("ap-northeast-2", "", "virtual"),
    Target("ap-northeast-2", "https://s3.ap-northeast-2.amazonaws.com", "path"),
    Target("default", "http://127.0.0.1:7480", "path"),  # Ceph RGW
]
TOKENS = [None, SESSION_TOKEN]
URLS_PER_COMBINATION = 250  # x 8 targets x 2 token settings = 4,000 URLs


# -- the oracle ------------------------------------------------------------------------------


class Botocore:
    """botocore's generate_presigned_url with a frozen clock: the reference implementation."""

    def __init__(self) -> None:
        self._session = botocore.session.Session()  # one session: the S3 model loads once
        self._clients: dict[tuple[Target, str | None, str, str], Any] = {}

    def url(
        self,
        target: Target,
        operation: str,
        params: dict[str, Any],
        *,
        expires_in: int,
        now: dt.datetime,
        token: str | None = None,
        access_key: str = ACCESS_KEY,
        secret_key: str = SECRET_KEY,
    ) -> str:
        client = self._client(target, token, access_key, secret_key)
        # botocore reads the clock through this function, as naive UTC.
        utc = now.astimezone(dt.UTC).replace(tzinfo=None)
        with mock.patch("botocore.auth.get_current_datetime", return_value=utc):
            url: str = client.generate_presigned_url(
                operation, Params={"Bucket": BUCKET, **params}, ExpiresIn=expires_in
            )
        return url

    def _client(self, target: Target, token: str | None, access_key: str, secret_key: str) -> Any:
        cache_key = (target, token, access_key, secret_key)
        if cache_key not in self._clients:
            self._clients[cache_key] = self._session.create_client(
                "s3",
                region_name=target.region,
                endpoint_url=target.endpoint or None,
                aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
                aws_session_token=token,
                config=Config(
                    signature_version="s3v4",
                    # Independent of AWS_ENDPOINT_URL* and ~/.aws/config on the test machine.
                    ignore_configured_endpoint_urls=True,
                    s3={
                        "addressing_style": target.style,
                        "us_east_1_regional_endpoint": target.us_east_1,
                    },
                ),
            )
        return self._clients[cache_key]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


@pytest.fixture(scope="module")
def oracle() -> Iterator[Botocore]:
    reference = Botocore()
    yield reference
    reference.close()


def make_presigner(
    target: Target,
    token: str | None,
    access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
) -> SigV4Presigner:
    return SigV4Presigner(
        access_key=access_key,
        secret_key=secret_key,
        region=target.region,
        endpoint=target.endpoint,
        bucket=BUCKET,
        addressing_style=target.style,
        session_token=token,
    )


# -- generated cases -------------------------------------------------------------------------

ALNUM = string.ascii_letters + string.digits
PUNCTUATION = string.punctuation  # all 32 ASCII punctuation characters
UNICODE = (
    "가각간갈감한국어영상의학과판독éèêàâüöïçñÅØßœ漢字かなカナ\u00e9e\u0301\u00a0\u3000\u200b\ufeff"
)
EMOJI = ["😀", "🩻", "🧠", "🫁", "👩‍⚕️", "🇰🇷"]
TRICKY = [
    "//",
    "%2F",
    "%2f",
    "%25",
    "%",
    "+",
    "~",
    " ",
    "  ",
    "?",
    "#",
    "&",
    "=",
    "\\",
    "\t",
    "\x7f",
]
CONTENT_TYPES = [
    "application/dicom",
    "application/octet-stream",
    "application/x-nifti",
    "text/plain;  charset=utf-8",  # runs of spaces are folded in the canonical request
    "  image/png ",
    'multipart/related; type="application/dicom"',
    "application/json\t",
]


@dataclass
class Case:
    seed: int
    operation: str
    method: str
    key: str
    expires_in: int
    now: dt.datetime
    params: dict[str, Any] = field(default_factory=dict)  # botocore's Params, minus Bucket/Key
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)


def has_dot_segment(key: str) -> bool:
    return any(segment in (".", "..") for segment in key.split("/"))


def random_key(rng: random.Random) -> str:
    while True:
        long_key = rng.random() < 0.1
        pieces = []
        for _ in range(rng.randint(300, 800) if long_key else rng.randint(1, 40)):
            r = rng.random()
            if r < 0.35:
                pieces.append(rng.choice(ALNUM))
            elif r < 0.55:
                pieces.append(rng.choice(PUNCTUATION))
            elif r < 0.68:
                pieces.append(rng.choice(UNICODE))
            elif r < 0.76:
                pieces.append(rng.choice(EMOJI))
            elif r < 0.9:
                pieces.append(rng.choice(TRICKY))
            else:
                pieces.append("/")
        key = "".join(pieces)
        while len(key.encode()) > 1024:  # S3's limit on key length
            key = key[:-1]
        if key and not has_dot_segment(key):
            return key


def random_text(rng: random.Random, n: int) -> str:
    alphabet = ALNUM + PUNCTUATION + " " + UNICODE + "".join(EMOJI)
    return "".join(rng.choice(alphabet) for _ in range(n))


def cased(rng: random.Random, name: str) -> str:
    return rng.choice([name, name.title(), name.upper()])


def case_for(seed: int) -> Case:
    rng = random.Random(seed)
    key = random_key(rng)
    expires_in = rng.choice([1, 60, 900, 3600, MAX_EXPIRES, rng.randint(1, MAX_EXPIRES)])
    now = dt.datetime(2020, 1, 1, tzinfo=dt.UTC) + dt.timedelta(
        seconds=rng.randint(0, 15 * 365 * 86400)
    )
    if rng.random() < 0.2:  # an aware non-UTC clock signs the same instant
        now = now.astimezone(dt.timezone(dt.timedelta(hours=9)))
    kind = rng.random()
    if kind < 0.45:
        case = Case(seed, "put_object", "PUT", key, expires_in, now)
        content_type = rng.choice(CONTENT_TYPES)
        size = rng.randint(0, 5 * 2**30)
        md5 = base64.b64encode(rng.randbytes(16)).decode()
        case.params = {"ContentType": content_type, "ContentLength": size, "ContentMD5": md5}
        case.headers = {
            cased(rng, "content-type"): content_type,
            cased(rng, "content-length"): str(size),
            cased(rng, "content-md5"): md5,
        }
        if rng.random() < 0.3:
            sse = rng.choice(["AES256", "aws:kms"])
            case.params["ServerSideEncryption"] = sse
            case.headers[cased(rng, "x-amz-server-side-encryption")] = sse
        if rng.random() < 0.2:
            sha = base64.b64encode(rng.randbytes(32)).decode()
            case.params["ChecksumSHA256"] = sha
            case.headers[cased(rng, "x-amz-checksum-sha256")] = sha
        if rng.random() < 0.5:  # write-once uploads
            case.params["IfNoneMatch"] = "*"
            case.headers[cased(rng, "if-none-match")] = "*"
        items = list(case.headers.items())
        rng.shuffle(items)  # the caller's order must not matter
        case.headers = dict(items)
    elif kind < 0.8:
        case = Case(seed, "get_object", "GET", key, expires_in, now)
        if rng.random() < 0.8:
            filename = random_text(rng, rng.randint(1, 30))
            disposition = rng.choice(
                [f'attachment; filename="{filename}"', f"inline; filename*=UTF-8''{filename}"]
            )
            case.params["ResponseContentDisposition"] = disposition
            case.query["response-content-disposition"] = disposition
        if rng.random() < 0.5:  # what every download URL pins (storage/inert.py)
            case.params["ResponseContentEncoding"] = "identity"
            case.query["response-content-encoding"] = "identity"
        if rng.random() < 0.3:
            case.params["ResponseContentType"] = "application/dicom"
            case.query["response-content-type"] = "application/dicom"
    elif kind < 0.93:
        case = Case(seed, "upload_part", "PUT", key, expires_in, now)
        upload_id = rng.choice(
            ["2~" + random_text(rng, 20), base64.urlsafe_b64encode(rng.randbytes(48)).decode()]
        )
        part = rng.randint(1, 10_000)
        size = rng.randint(5 * 2**20, 5 * 2**30)
        case.params = {"UploadId": upload_id, "PartNumber": part, "ContentLength": size}
        case.query = {"uploadId": upload_id, "partNumber": str(part)}
        case.headers = {"Content-Length": str(size)}
    else:
        operation, method = rng.choice([("head_object", "HEAD"), ("delete_object", "DELETE")])
        case = Case(seed, operation, method, key, expires_in, now)
    return case


def assert_same_url(ours: str, theirs: str, case: Case) -> None:
    if ours == theirs:
        return
    ours_parts, their_parts = urlsplit(ours), urlsplit(theirs)
    pytest.fail(
        f"seed {case.seed}: key {case.key!r}, {case.method}, headers {case.headers!r}, "
        f"query {case.query!r}\n"
        f"  ours:     {ours}\n  botocore: {theirs}\n"
        f"  path equal: {ours_parts.path == their_parts.path}, query pairs equal: "
        f"{parse_qsl(ours_parts.query) == parse_qsl(their_parts.query)}"
    )


# -- the identity tests ----------------------------------------------------------------------


def sign_case(presigner: SigV4Presigner, case: Case) -> str:
    return presigner.presign(
        case.method,
        case.key,
        expires_in=case.expires_in,
        headers=case.headers,
        query=case.query,
        now=case.now,
    )


def reference_url(oracle: Botocore, target: Target, token: str | None, case: Case) -> str:
    return oracle.url(
        target,
        case.operation,
        {"Key": case.key, **case.params},
        expires_in=case.expires_in,
        now=case.now,
        token=token,
    )


@pytest.mark.parametrize("token", TOKENS, ids=["no-token", "session-token"])
@pytest.mark.parametrize("target", TARGETS, ids=lambda t: f"{t.region}-{t.style}-{t.endpoint}")
def test_generated_urls_identical_to_botocore(
    target: Target, token: str | None, oracle: Botocore
) -> None:
    presigner = make_presigner(target, token)
    first_seed = (TARGETS.index(target) * 2 + TOKENS.index(token)) * URLS_PER_COMBINATION
    for seed in range(first_seed, first_seed + URLS_PER_COMBINATION):
        case = case_for(seed)
        assert_same_url(
            sign_case(presigner, case), reference_url(oracle, target, token, case), case
        )


def test_arbitrary_query_and_headers_identical_to_botocore_signer() -> None:
    """Query names and header sets the S3 model has no parameter for, through botocore's
    S3SigV4QueryAuth directly: sorting ("a" vs "a-b"), encoding, folding, token placement."""
    rng = random.Random(7)
    target = TARGETS[-1]
    origin = f"{target.endpoint}/{BUCKET}/"
    for _ in range(300):
        token = rng.choice(TOKENS)
        query: dict[str, str] = {}
        for _ in range(rng.randint(1, 6)):
            name = rng.choice(["a", "a-b", "a.b", "A", "versionId", "x-id"]) + random_text(
                rng, rng.randint(0, 3)
            )
            if name.lower().startswith("x-amz-"):
                continue
            query[name] = random_text(rng, rng.randint(0, 20))
        headers = {
            f"X-Amz-Meta-{rng.choice(ALNUM)}{i}": rng.choice(["", " ", "\t"])
            + random_text(rng, rng.randint(0, 20)).replace("  ", rng.choice(["  ", "\t "]))
            for i in range(rng.randint(0, 4))
        }
        key = random_key(rng)
        now = NOW + dt.timedelta(seconds=rng.randint(0, 10**8))
        ours = make_presigner(target, token).presign(
            "GET", key, expires_in=3600, headers=headers, query=query, now=now
        )

        request = AWSRequest(
            method="GET",
            url=origin + quote(key.encode(), safe="/~"),
            params=dict(query),
            headers=dict(headers),
        )
        signer = S3SigV4QueryAuth(
            Credentials(ACCESS_KEY, SECRET_KEY, token), "s3", target.region, expires=3600
        )
        with mock.patch(
            "botocore.auth.get_current_datetime", return_value=now.replace(tzinfo=None)
        ):
            signer.add_auth(request)
        assert ours == request.url, (key, query, headers)


def test_generated_keys_cover_the_hard_cases() -> None:
    keys = [case_for(seed).key for seed in range(len(TARGETS) * len(TOKENS) * URLS_PER_COMBINATION)]
    assert len(keys) >= 3000
    text = "".join(keys)
    assert set(PUNCTUATION) <= set(text)
    for needle in ["//", "%2F", "+", "~", " ", "한", "é", "e\u0301", "😀", "🩻"]:
        assert needle in text, needle
    assert max(len(k.encode()) for k in keys) > 1000
    assert any(k.startswith("/") for k in keys)


@pytest.mark.parametrize(
    ("region", "endpoint", "style"),
    [
        ("default", "http://127.0.0.1:80", "path"),  # default port: not in the signed host
        ("default", "http://127.0.0.1:7480/prefix/", "path"),  # endpoint path prefix
        ("default", "http://[::1]:7480", "path"),
        ("default", "HTTP://Example.COM:443", "path"),  # host signed lower-case
        ("default", "https://s3.example.com:8443", "virtual"),
        ("cn-north-1", "", "virtual"),
        ("us-gov-west-1", "", "path"),
    ],
)
def test_endpoint_variants_identical_to_botocore(
    region: str, endpoint: str, style: Literal["path", "virtual"], oracle: Botocore
) -> None:
    target = Target(region, endpoint, style)
    presigner = make_presigner(target, None)
    for seed in range(10_000_000, 10_000_050):
        case = case_for(seed)
        assert_same_url(sign_case(presigner, case), reference_url(oracle, target, None, case), case)


@pytest.mark.parametrize(
    "key", ["a.", ".a", "a/.b/c", "...", "a/.../b", "a..b", "..a/b..", "x/", "/lead", "a\x00b"]
)
def test_keys_with_dots_that_are_not_dot_segments_are_signed(key: str, oracle: Botocore) -> None:
    target = TARGETS[-1]
    ours = make_presigner(target, None).presign("GET", key, expires_in=60, now=NOW)
    assert ours == oracle.url(target, "get_object", {"Key": key}, expires_in=60, now=NOW)


def test_lower_case_method_is_accepted(oracle: Botocore) -> None:
    target = TARGETS[0]
    ours = make_presigner(target, None).presign("get", "k", expires_in=60, now=NOW)
    assert ours == oracle.url(target, "get_object", {"Key": "k"}, expires_in=60, now=NOW)


# -- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", [".", "..", "./a", "../a", "a/.", "a/..", "a/./b", "a/../b", "a//./b", "a/b/../../c"]
)
def test_dot_segments_are_refused(key: str) -> None:
    with pytest.raises(InvalidObjectKey):
        make_presigner(TARGETS[0], None).presign("GET", key, expires_in=60)


@pytest.mark.parametrize("key", ["", "bad\udcffsurrogate"])
def test_empty_and_unencodable_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidObjectKey):
        make_presigner(TARGETS[0], None).presign("PUT", key, expires_in=60)


@pytest.mark.parametrize("expires_in", [0, -1, MAX_EXPIRES + 1, 10**9])
def test_expiry_out_of_bounds_is_refused(expires_in: int) -> None:
    with pytest.raises(ValueError, match="expires_in"):
        make_presigner(TARGETS[0], None).presign("GET", "k", expires_in=expires_in)


@pytest.mark.parametrize("expires_in", [900.0, True, "900"])
def test_expiry_must_be_an_int(expires_in: Any) -> None:
    with pytest.raises(ValueError, match="expires_in"):
        make_presigner(TARGETS[0], None).presign("GET", "k", expires_in=expires_in)


@pytest.mark.parametrize("expires_in", [1, MAX_EXPIRES])
def test_expiry_bounds_are_inclusive(expires_in: int, oracle: Botocore) -> None:
    target = TARGETS[3]
    ours = make_presigner(target, None).presign("GET", "k", expires_in=expires_in, now=NOW)
    assert ours == oracle.url(target, "get_object", {"Key": "k"}, expires_in=expires_in, now=NOW)
    assert f"X-Amz-Expires={expires_in}&" in ours


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        make_presigner(TARGETS[0], None).presign(
            "GET", "k", expires_in=60, now=NOW.replace(tzinfo=None)
        )


@pytest.mark.parametrize(
    ("headers", "query", "error"),
    [
        ({"Host": "evil.example"}, None, "host is always signed"),
        ({"Content-Type": "a", "content-type": "b"}, None, "duplicate"),
        ({"bad name": "x"}, None, "invalid header name"),
        (None, {"X-Amz-Signature": "0"}, "reserved"),
        (None, {"x-amz-security-token": "t"}, "reserved"),
    ],
)
def test_conflicting_headers_and_query_are_refused(
    headers: dict[str, str] | None, query: dict[str, str] | None, error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        make_presigner(TARGETS[0], None).presign(
            "PUT", "k", expires_in=60, headers=headers, query=query
        )


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="method"):
        make_presigner(TARGETS[0], None).presign("PATCH", "k", expires_in=60)


@pytest.mark.parametrize(
    ("endpoint", "bucket", "style", "error"),
    [
        ("ftp://h", BUCKET, "path", "http"),
        ("http://user:pw@h:7480", BUCKET, "path", "credentials"),
        ("http://h:7480?x=1", BUCKET, "path", "query"),
        ("http://h_x%41:7480", BUCKET, "path", "DNS name"),
        ("", "my.bucket", "virtual", "virtual-host"),  # botocore silently uses path style
        ("", "Upper", "virtual", "virtual-host"),
        ("", "a/b", "path", "invalid bucket"),
    ],
)
def test_bad_configuration_is_refused(
    endpoint: str, bucket: str, style: Literal["path", "virtual"], error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        SigV4Presigner(
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            region="eu-west-1",
            endpoint=endpoint,
            bucket=bucket,
            addressing_style=style,
        )


# -- caching and credentials -----------------------------------------------------------------


@pytest.fixture
def derivations() -> Iterator[mock.MagicMock]:
    with mock.patch.object(
        SigV4Presigner,
        "_derive_signing_key",
        autospec=True,
        side_effect=SigV4Presigner._derive_signing_key,
    ) as derive:
        yield derive


def test_signing_key_is_derived_once_per_day(derivations: mock.MagicMock, oracle: Botocore) -> None:
    target = TARGETS[5]
    presigner = make_presigner(target, None)
    day_end = dt.datetime(2024, 5, 6, 23, 59, 59, tzinfo=dt.UTC)
    for i, now in enumerate([NOW, NOW + dt.timedelta(seconds=1), day_end]):
        key = f"day1/{i}"
        ours = presigner.presign("GET", key, expires_in=60, now=now)
        assert ours == oracle.url(target, "get_object", {"Key": key}, expires_in=60, now=now)
    for i in range(100):
        presigner.presign(
            "PUT",
            f"day1/put/{i}",
            expires_in=60,
            headers={"content-length": str(i)},
            now=NOW + dt.timedelta(seconds=i),
        )
    assert derivations.call_count == 1

    next_day = day_end + dt.timedelta(seconds=1)
    ours = presigner.presign("GET", "day2", expires_in=60, now=next_day)
    assert ours == oracle.url(target, "get_object", {"Key": "day2"}, expires_in=60, now=next_day)
    assert derivations.call_count == 2


def test_set_credentials_rotates_key_and_token(
    derivations: mock.MagicMock, oracle: Botocore
) -> None:
    target = TARGETS[7]
    presigner = make_presigner(target, None)
    presigner.presign("GET", "k", expires_in=60, now=NOW)
    assert derivations.call_count == 1

    rotated = {
        "access_key": "ASIAROTATED",
        "secret_key": "rotated/secret+key",
        "token": "rotated-token/+=",
    }
    presigner.set_credentials(rotated["access_key"], rotated["secret_key"], rotated["token"])
    ours = presigner.presign("GET", "k", expires_in=60, now=NOW)
    assert ours == oracle.url(target, "get_object", {"Key": "k"}, expires_in=60, now=NOW, **rotated)
    assert derivations.call_count == 2
    assert "X-Amz-Security-Token=rotated-token%2F%2B%3D&X-Amz-Signature=" in ours

    presigner.set_credentials(ACCESS_KEY, SECRET_KEY)  # back to long-term keys, no token
    ours = presigner.presign("GET", "k", expires_in=60, now=NOW)
    assert ours == oracle.url(target, "get_object", {"Key": "k"}, expires_in=60, now=NOW)
    assert "X-Amz-Security-Token" not in ours
    assert derivations.call_count == 3


def test_default_clock_is_current_utc_time() -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    url = make_presigner(TARGETS[0], None).presign("GET", "k", expires_in=60)
    after = dt.datetime.now(dt.UTC)
    amz_date = dict(parse_qsl(urlsplit(url).query))["X-Amz-Date"]
    signed_at = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    assert before <= signed_at <= after
