"""SigV4 query-string signing (presigned URLs) for S3, built for throughput.

A study upload asks for thousands of URLs at once; botocore spends ~180 µs on each (URL
parsing, endpoint rules, serialisation, and re-deriving the signing key every time). This
signer does only the SigV4 work: one SHA-256 of the canonical request and one HMAC of the
string to sign per URL. Everything that does not depend on the key, the headers or the
second of the clock is computed once, at construction or once per UTC day.

The output is byte-for-byte the URL botocore's ``generate_presigned_url`` produces for the
same inputs (s3v4, same addressing style); tests/storage/test_sigv4.py holds it to that.
"""

from __future__ import annotations

import calendar
import hmac
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from hashlib import sha256
from typing import TYPE_CHECKING, Final, Literal, NamedTuple
from urllib.parse import quote, urlsplit

from pacs_ext.storage.base import InvalidObjectKey

if TYPE_CHECKING:
    from hashlib import _Hash

__all__ = ["MAX_EXPIRES", "SigV4Presigner"]

MAX_EXPIRES: Final = 604_800  # 7 days: SigV4's hard limit for query-string auth

_ALGORITHM: Final = "AWS4-HMAC-SHA256"
_UNSIGNED_PAYLOAD: Final = "UNSIGNED-PAYLOAD"
_QUERY_SAFE: Final = "-_.~"  # RFC 3986 unreserved: what SigV4 leaves unencoded in queries
_METHODS: Final = frozenset({"GET", "PUT", "HEAD", "DELETE", "POST"})
_AUTH_PARAMS: Final = frozenset(
    {
        "x-amz-algorithm",
        "x-amz-credential",
        "x-amz-date",
        "x-amz-expires",
        "x-amz-signedheaders",
        "x-amz-security-token",
        "x-amz-signature",
    }
)
# Bytes quote(key, safe="/~") leaves alone: a key made only of these is its own encoding, and
# deleting them with bytes.translate() finds that out ~4x faster than quote() itself.
_KEY_SAFE_BYTES: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~/"
_HOSTNAME: Final = re.compile(r"[a-z0-9.-]+|[0-9a-f:.]+")  # urlsplit lower-cases hostnames
_SCOPE_PART: Final = re.compile(r"[A-Za-z0-9_-]+")
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token
# Buckets that can be a DNS label under TLS; dotted names break the wildcard certificate.
_VIRTUAL_BUCKET: Final = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")


class _Credentials(NamedTuple):
    access_key: str
    secret_key: str
    token: str  # percent-encoded session token, or ""
    # "&X-Amz-Security-Token=<encoded>" or "": the same text in the URL and canonical query.
    token_param: str


class _Day(NamedTuple):
    """Everything that changes only with the UTC date (or the credentials)."""

    datestamp: str
    credentials: _Credentials
    credential: str  # percent-encoded "<access key>/<date>/<region>/<service>/aws4_request"
    # "\n<scope>\n": what follows the timestamp in the string to sign.
    sts_scope: str
    # "X-Amz-Algorithm=...&X-Amz-Credential=...&X-Amz-Date=": the shared start of the
    # canonical query and of the URL's auth parameters.
    auth_prefix: str
    # HMAC-SHA256 under the signing key, as the two SHA-256 states left after hashing the
    # padded key (RFC 2104); the inner one has also taken "AWS4-HMAC-SHA256\n". Copying
    # them costs half of hmac.digest(), which re-keys on every call (OpenSSL 3).
    hmac_inner: _Hash
    hmac_outer: _Hash


class _Stamp(NamedTuple):
    epoch: int
    datestamp: str  # 20240506
    amz_date: str  # 20240506T070809Z


class _HeaderLayout(NamedTuple):
    """What one set of signed header names contributes; callers reuse a few such sets."""

    # %-template of the canonical request's end: the canonical headers (host included), the
    # signed header list and the payload hash. %-formatting is twice as fast as str.format.
    tail: str
    # Indices of the caller's values in sorted-name order; None when already sorted.
    order: tuple[int, ...] | None
    signed_headers_encoded: str  # "content-type%3Bhost"
    signed_headers_param: str  # "&X-Amz-SignedHeaders=content-type%3Bhost"


class SigV4Presigner:
    """Presigns S3 object URLs with SigV4 query authentication (UNSIGNED-PAYLOAD).

    `endpoint` is what the *client* will connect to (its host is signed); "" means AWS's
    default for `region`, as botocore picks it. `service` only names the credential scope:
    S3's rules (no path normalisation, single encoding) apply whatever it is.

    Thread-safe: the cached values are immutable and swapped in by single assignments, so a
    URL is always signed with one consistent set of credentials, even while another thread
    calls set_credentials().
    """

    __slots__ = (
        "_clock",
        "_credentials",
        "_day",
        "_host",
        "_layouts",
        "_no_header_layout",
        "_origin",
        "_path_prefix",
        "_region",
        "_scope_suffix",
        "_service",
        "_stamp",
    )

    def __init__(
        self,
        *,
        access_key: str,
        secret_key: str,
        region: str,
        endpoint: str,
        bucket: str,
        addressing_style: Literal["path", "virtual"],
        session_token: str | None = None,
        service: str = "s3",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not _SCOPE_PART.fullmatch(region):
            raise ValueError(f"invalid region {region!r}")
        if not _SCOPE_PART.fullmatch(service):
            raise ValueError(f"invalid service {service!r}")
        if not bucket or "/" in bucket:
            raise ValueError(f"invalid bucket {bucket!r}")
        if addressing_style not in ("path", "virtual"):
            raise ValueError(f"addressing_style must be 'path' or 'virtual': {addressing_style!r}")
        self._clock = clock  # Unix seconds: the signing time when presign() is given none
        self._region = region
        self._service = service
        self._scope_suffix = f"/{region}/{service}/aws4_request"

        scheme, netloc, hostname, port, base_path = _parse_endpoint(
            endpoint or _aws_endpoint(region)
        )
        # The Host header is signed, so it must be exactly what the HTTP client will send:
        # lower-case, without a default port (as botocore's _host_from_url derives it).
        if ":" in hostname:
            hostname = f"[{hostname}]"
        host = hostname
        if port is not None and port != {"http": 80, "https": 443}[scheme]:
            host = f"{hostname}:{port}"
        if addressing_style == "virtual":
            # botocore silently falls back to path style for such buckets; a configuration
            # asking for virtual hosting of one is a mistake worth hearing about.
            if not _VIRTUAL_BUCKET.fullmatch(bucket):
                raise ValueError(
                    f"bucket {bucket!r} cannot be addressed virtual-host style; use 'path'"
                )
            netloc = f"{bucket}.{netloc}"
            host = f"{bucket}.{host}"
            self._path_prefix = f"{base_path}/"
        else:
            self._path_prefix = f"{base_path}/{quote(bucket, safe='')}/"
        self._origin = f"{scheme}://{netloc}"
        self._host = host
        self._layouts: dict[tuple[str, ...], _HeaderLayout] = {}
        self._no_header_layout = _header_layout((), host)
        self._stamp = _Stamp(-1, "", "")
        self._credentials = _make_credentials(access_key, secret_key, session_token)
        self._day: _Day | None = None

    def set_credentials(
        self, access_key: str, secret_key: str, session_token: str | None = None
    ) -> None:
        """Switch to rotated credentials; the next URL re-derives the signing key."""
        self._credentials = _make_credentials(access_key, secret_key, session_token)
        self._day = None

    def presign(
        self,
        method: str,
        key: str,
        *,
        expires_in: int,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        now: datetime | None = None,
    ) -> str:
        """Return a presigned URL for `method` on object `key`.

        headers: extra headers the client must send verbatim (host is always signed).
        query: extra query parameters, signed and placed first in the URL in this order.
        now: signing time, timezone-aware; defaults to the signer's clock.
        """
        if method not in _METHODS:
            upper = method.upper()
            if upper not in _METHODS:
                raise ValueError(f"unsupported method {method!r}")
            method = upper
        if type(expires_in) is not int or not 1 <= expires_in <= MAX_EXPIRES:
            raise ValueError(f"expires_in must be an int in 1..{MAX_EXPIRES} s: {expires_in!r}")

        path = self._path_prefix + _quote_key(key)

        if now is None:
            epoch = int(self._clock())
        elif now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        else:
            epoch = calendar.timegm(now.utctimetuple())
        stamp = self._stamp
        if stamp.epoch != epoch:
            stamp = self._stamp = _make_stamp(epoch)

        credentials = self._credentials
        day = self._day
        if day is None or day.datestamp != stamp.datestamp or day.credentials is not credentials:
            day = self._day = self._make_day(credentials, stamp.datestamp)

        if headers:
            layout = self._layouts.get(names := tuple(headers))
            if layout is None:
                layout = self._layout_for(names)
            # SigV4 trims values and folds inner whitespace runs (botocore: " ".join(split())).
            if layout.order is None:
                values = [" ".join(value.split()) for value in headers.values()]
            else:
                given = tuple(headers.values())
                values = [" ".join(given[i].split()) for i in layout.order]
            tail = layout.tail % tuple(values)
        else:
            layout = self._no_header_layout
            tail = layout.tail

        auth_head = f"{day.auth_prefix}{stamp.amz_date}&X-Amz-Expires={expires_in}"
        token_param = day.credentials.token_param
        # The URL has botocore's order: operation parameters, then the auth parameters with the
        # token after SignedHeaders; the canonical query is sorted (Security-Token first).
        auth_params = f"{auth_head}{layout.signed_headers_param}{token_param}"
        if query:
            operation_params, canonical_query = self._query_parts(
                query, day, stamp, expires_in, layout
            )
        else:
            operation_params = ""
            canonical_query = f"{auth_head}{token_param}{layout.signed_headers_param}"

        canonical_request = f"{method}\n{path}\n{canonical_query}\n{tail}".encode()
        inner = day.hmac_inner.copy()
        inner.update(
            f"{stamp.amz_date}{day.sts_scope}{sha256(canonical_request).hexdigest()}".encode()
        )
        outer = day.hmac_outer.copy()
        outer.update(inner.digest())
        return (
            f"{self._origin}{path}?{operation_params}{auth_params}"
            f"&X-Amz-Signature={outer.hexdigest()}"
        )

    def _make_day(self, credentials: _Credentials, datestamp: str) -> _Day:
        scope = datestamp + self._scope_suffix
        credential = quote(f"{credentials.access_key}/{scope}", safe=_QUERY_SAFE)
        signing_key = self._derive_signing_key(credentials.secret_key, datestamp)
        block = signing_key.ljust(64, b"\0")  # 32 bytes, SHA-256's block is 64
        inner = sha256(bytes(b ^ 0x36 for b in block))
        inner.update(f"{_ALGORITHM}\n".encode())
        return _Day(
            datestamp=datestamp,
            credentials=credentials,
            credential=credential,
            sts_scope=f"\n{scope}\n",
            auth_prefix=f"X-Amz-Algorithm={_ALGORITHM}&X-Amz-Credential={credential}&X-Amz-Date=",
            hmac_inner=inner,
            hmac_outer=sha256(bytes(b ^ 0x5C for b in block)),
        )

    def _derive_signing_key(self, secret_key: str, datestamp: str) -> bytes:
        """The 4 chained HMACs; called once per UTC day and credential set."""
        k = hmac.digest(f"AWS4{secret_key}".encode(), datestamp.encode(), "sha256")
        k = hmac.digest(k, self._region.encode(), "sha256")
        k = hmac.digest(k, self._service.encode(), "sha256")
        return hmac.digest(k, b"aws4_request", "sha256")

    def _layout_for(self, names: tuple[str, ...]) -> _HeaderLayout:
        layout = _header_layout(names, self._host)
        if len(self._layouts) >= 64:  # callers use a handful of header sets; stay bounded
            self._layouts = {}
        self._layouts[names] = layout
        return layout

    @staticmethod
    def _query_parts(
        query: Mapping[str, str],
        day: _Day,
        stamp: _Stamp,
        expires_in: int,
        layout: _HeaderLayout,
    ) -> tuple[str, str]:
        """(URL operation parameters with trailing "&", canonical query) for extra params."""
        pairs: list[tuple[str, str]] = []
        for name, value in query.items():
            if name.lower() in _AUTH_PARAMS:
                raise ValueError(f"query parameter {name!r} is reserved for the signature")
            pairs.append((quote(name, safe=_QUERY_SAFE), quote(value, safe=_QUERY_SAFE)))
        operation_params = "".join([f"{k}={v}&" for k, v in pairs])
        pairs.append(("X-Amz-Algorithm", _ALGORITHM))
        pairs.append(("X-Amz-Credential", day.credential))
        pairs.append(("X-Amz-Date", stamp.amz_date))
        pairs.append(("X-Amz-Expires", str(expires_in)))
        pairs.append(("X-Amz-SignedHeaders", layout.signed_headers_encoded))
        if day.credentials.token_param:
            pairs.append(("X-Amz-Security-Token", day.credentials.token))
        # Sort (name, value) pairs, not "name=value" strings: "a-b=" sorts before "a=".
        pairs.sort()
        return operation_params, "&".join([f"{k}={v}" for k, v in pairs])


def _quote_key(key: str) -> str:
    # S3 keys are encoded exactly once, from UTF-8, with "/" kept: no normalisation of "//"
    # or "%2F", no double encoding (that is for the other services' canonical URIs).
    try:
        raw = key.encode()
    except UnicodeEncodeError as exc:  # lone surrogates, e.g. from a mangled file name
        raise InvalidObjectKey(f"object key {key!r} is not valid Unicode") from exc
    if not raw or raw[0] == 0x2E or b"/." in raw:  # cheap filter before the exact check
        _refuse_dot_segments(key)
    if raw.translate(None, _KEY_SAFE_BYTES):  # some byte needs %-encoding
        return quote(raw, safe="/~")
    return key


def _refuse_dot_segments(key: str) -> None:
    if not key:
        raise InvalidObjectKey("empty object key")
    # HTTP clients (httpx, requests, browsers) drop "." and ".." segments before sending, so
    # the request would not reach the path that was signed.
    if any(segment in (".", "..") for segment in key.split("/")):
        raise InvalidObjectKey(f"object key {key!r} has a '.' or '..' segment")


def _make_credentials(access_key: str, secret_key: str, session_token: str | None) -> _Credentials:
    if not access_key or not secret_key:
        raise ValueError("access_key and secret_key must not be empty")
    if session_token is None:
        return _Credentials(access_key, secret_key, "", "")
    token = quote(session_token, safe=_QUERY_SAFE)
    return _Credentials(access_key, secret_key, token, f"&X-Amz-Security-Token={token}")


def _make_stamp(epoch: int) -> _Stamp:
    t = time.gmtime(epoch)
    datestamp = f"{t.tm_year:04d}{t.tm_mon:02d}{t.tm_mday:02d}"
    return _Stamp(epoch, datestamp, f"{datestamp}T{t.tm_hour:02d}{t.tm_min:02d}{t.tm_sec:02d}Z")


def _header_layout(names: tuple[str, ...], host: str) -> _HeaderLayout:
    entries: list[tuple[str, int]] = [("host", -1)]
    for i, name in enumerate(names):
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"invalid header name {name!r}")
        entries.append((name.lower(), i))
    if len({name for name, _ in entries}) != len(entries):
        raise ValueError(f"duplicate or host header among {names!r}; host is always signed")
    entries.sort()
    signed_headers = ";".join([name for name, _ in entries])
    encoded = quote(signed_headers, safe=_QUERY_SAFE)
    canonical_headers = "".join(
        [f"{name}:{host}\n" if i < 0 else f"{name.replace('%', '%%')}:%s\n" for name, i in entries]
    )
    order = tuple([i for _, i in entries if i >= 0])
    return _HeaderLayout(
        tail=f"{canonical_headers}\n{signed_headers.replace('%', '%%')}\n{_UNSIGNED_PAYLOAD}",
        order=None if order == tuple(range(len(names))) else order,
        signed_headers_encoded=encoded,
        signed_headers_param=f"&X-Amz-SignedHeaders={encoded}",
    )


def _aws_endpoint(region: str) -> str:
    # As botocore resolves it by default: us-east-1 keeps the global endpoint
    # (s3_us_east_1_regional_endpoint = "legacy"); pass the regional one explicitly if wanted.
    if region == "us-east-1":
        return "https://s3.amazonaws.com"
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://s3.{region}.{suffix}"


def _parse_endpoint(endpoint: str) -> tuple[str, str, str, int | None, str]:
    """(scheme, netloc as given, lower-case hostname, port, path prefix without "/" at end)."""
    parts = urlsplit(endpoint)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"endpoint must be an http(s) URL with a host: {endpoint!r}")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(f"endpoint must not have credentials, a query or a fragment: {endpoint!r}")
    # Also keeps "%" out of the canonical-header templates.
    if not _HOSTNAME.fullmatch(parts.hostname):
        raise ValueError(f"endpoint host must be a DNS name or an IP address: {endpoint!r}")
    return scheme, parts.netloc, parts.hostname, parts.port, parts.path.rstrip("/")
