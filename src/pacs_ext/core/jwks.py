"""An OIDC provider's signing keys, fetched from its JWKS URL without blocking the event loop.

Keys are cached for `jwks_cache_seconds`. A token whose `kid` is not in the cache triggers one
refetch (key rotation), but fetches are never closer together than `jwks_min_refetch_seconds`:
tokens with made-up key ids cannot turn this server into a load generator against the IdP.
When a refresh fails, the keys already held stay in use (the IdP being down for a minute
should not log everybody out).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import structlog
from jwt import PyJWK
from jwt.exceptions import PyJWKError

log = structlog.get_logger(__name__)

# Curves each EC algorithm may use (RFC 7518 §3.4).
_EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


class JwksUnavailable(Exception):
    """The provider's keys could not be fetched and none are cached."""


class UnknownSigningKey(Exception):
    """The token names a key the provider does not publish (or one unfit for its algorithm)."""


class JwksKeys:
    def __init__(
        self,
        url: str,
        *,
        cache_seconds: float,
        min_refetch_seconds: float,
        timeout_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._cache_seconds = cache_seconds
        self._min_refetch = min_refetch_seconds
        self._timeout = timeout_seconds
        self._clock = clock
        self._lock = asyncio.Lock()
        self._jwks: dict[str | None, dict[str, Any]] | None = None
        self._fetched_at = 0.0
        self._last_attempt: float | None = None
        self._parsed: dict[tuple[str | None, str], PyJWK] = {}
        self.fetches = 0

    async def key_for(self, kid: str | None, alg: str) -> PyJWK:
        """The public key for (kid, alg); fetches or refetches the JWKS when needed."""
        jwk = self._cached(kid)
        # A stale key still serves while another request refreshes: a slow or down provider
        # must not queue every request behind the lock.
        if jwk is None or not (self._fresh() or self._lock.locked()):
            jwk = await self._refresh_and_find(kid)
        return self._parse(kid, jwk, alg)

    def _fresh(self) -> bool:
        return self._jwks is not None and self._clock() - self._fetched_at < self._cache_seconds

    def _cached(self, kid: str | None) -> dict[str, Any] | None:
        if self._jwks is None:
            return None
        if kid is None:
            # A token without kid is only unambiguous when the provider publishes one key.
            return next(iter(self._jwks.values())) if len(self._jwks) == 1 else None
        return self._jwks.get(kid)

    async def _refresh_and_find(self, kid: str | None) -> dict[str, Any]:
        async with self._lock:
            # Another request may have refreshed while this one waited for the lock.
            jwk = self._cached(kid)
            if jwk is not None and self._fresh():
                return jwk
            now = self._clock()
            if self._last_attempt is None or now - self._last_attempt >= self._min_refetch:
                self._last_attempt = now
                await self._fetch()
            jwk = self._cached(kid)
        if jwk is not None:
            return jwk
        if self._jwks is None:
            raise JwksUnavailable("the identity provider's signing keys could not be fetched")
        if kid is None:
            raise UnknownSigningKey("token has no key id (kid) and the provider has several keys")
        raise UnknownSigningKey(f"token is signed with an unknown key (kid {kid!r})")

    async def _fetch(self) -> None:
        self.fetches += 1
        try:
            async with httpx.AsyncClient(timeout=self._timeout, follow_redirects=False) as client:
                response = await client.get(self._url, headers={"Accept": "application/json"})
            response.raise_for_status()
            keys = _signing_keys(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            # Keep serving with the keys already held, if any; the next try is rate-limited.
            log.warning(
                "auth.jwks_fetch_failed",
                url=self._url,
                error=_first_line(exc),
                cached_keys=len(self._jwks or {}),
            )
            return
        self._jwks = keys
        self._fetched_at = self._clock()
        self._parsed.clear()
        log.info("auth.jwks_fetched", url=self._url, keys=len(keys))

    def _parse(self, kid: str | None, jwk: dict[str, Any], alg: str) -> PyJWK:
        cached = self._parsed.get((kid, alg))
        if cached is not None:
            return cached
        declared = jwk.get("alg")
        if declared is not None and declared != alg:
            raise UnknownSigningKey(f"key {kid!r} is for {declared}, not {alg}")
        if jwk.get("kty") != _KEY_TYPES.get(alg[:2]):
            raise UnknownSigningKey(f"key {kid!r} ({jwk.get('kty')}) cannot verify {alg} tokens")
        if alg in _EC_CURVES and jwk.get("crv") != _EC_CURVES[alg]:
            raise UnknownSigningKey(f"key {kid!r} is on curve {jwk.get('crv')}, not for {alg}")
        try:
            key = PyJWK(jwk, algorithm=alg)
        except (PyJWKError, ValueError, TypeError) as exc:
            raise UnknownSigningKey(f"key {kid!r} is unusable: {exc}") from None
        self._parsed[(kid, alg)] = key
        return key


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:300]


def _signing_keys(document: Any) -> dict[str | None, dict[str, Any]]:
    """kid → JWK for the signature keys of a JWKS document; ValueError when it is not one."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document (no 'keys' list)")
    out: dict[str | None, dict[str, Any]] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
            continue
        kid = jwk.get("kid")
        if kid is not None and not isinstance(kid, str):
            continue
        out[kid] = jwk
    return out
