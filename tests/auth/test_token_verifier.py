"""TokenVerifier and the JWKS cache in-process, against a JWKS served over HTTP on loopback:
HS256 and OIDC side by side, refetch rate limit, provider outages, configuration checks."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from fixtures.oidc import AUDIENCE, ISSUER, JwksServer, claims, ec_key, forge, rsa_key
from pacs_ext.core.auth import TokenVerifier, create_token
from pacs_ext.core.config import ConfigError, Settings, load_settings
from pacs_ext.core.errors import ServiceUnavailable, Unauthorized
from pacs_ext.core.jwks import JwksKeys, JwksUnavailable, UnknownSigningKey

SECRET = "in-process-test-secret-" + "s" * 30


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for key in list(os.environ):
        if key.startswith("APP_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("APP_CONFIG_DIR", str(tmp_path / "no-config"))
    monkeypatch.setenv("APP_SERVER__DATA_DIR", str(tmp_path / "data"))
    return tmp_path


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    server = JwksServer()
    server.serve(rsa_key("k1"), ec_key("k2"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _settings(jwks: JwksServer, **auth: Any) -> Settings:
    values: dict[str, Any] = {
        "jwks_url": jwks.url,
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "roles_claim": "realm_access.roles",
        **auth,
    }
    return load_settings(env="test", auth=values)


async def test_hs256_and_jwks_side_by_side(clean_env: Path, jwks: JwksServer) -> None:
    settings = _settings(jwks, jwt_secret=SECRET, project_write_role="annotator")
    verifier = TokenVerifier(settings)
    assert verifier.accepted_algorithms == ["HS256", "RS256", "ES256"]
    dev = await verifier.verify(
        create_token(settings, "dev", admin=True, projects=["p1"], roles=["annotator"])
    )
    assert (dev.subject, dev.is_admin, dev.projects, dev.project_writer) == (
        "dev",
        True,
        frozenset({"p1"}),
        True,
    )
    rsa = jwks.keys[0]
    oidc = await verifier.verify(rsa.sign(claims("kc-user", projects=["p2"])))
    assert (oidc.subject, oidc.is_admin, oidc.projects) == ("kc-user", False, frozenset({"p2"}))
    # The RSA public key used as the HMAC secret: HS256 is accepted here, the signature is not.
    forged = forge(
        {"alg": "HS256", "kid": rsa.kid}, claims("root", roles=["admin"]), rsa.public_pem()
    )
    with pytest.raises(Unauthorized, match="Signature verification failed"):
        await verifier.verify(forged)
    with pytest.raises(Unauthorized, match="not accepted"):
        await verifier.verify(forge({"alg": "none"}, claims("root"), None))
    with pytest.raises(Unauthorized, match="not accepted"):
        await verifier.verify(forge({"alg": "HS512"}, claims("root"), SECRET.encode()))


async def test_projects_claim_may_be_one_string(clean_env: Path, jwks: JwksServer) -> None:
    verifier = TokenVerifier(_settings(jwks, projects_claim="attrs.project"))
    p = await verifier.verify(jwks.keys[1].sign(claims("u", attrs={"project": "lung-ct"})))
    assert p.projects == frozenset({"lung-ct"})
    assert p.project_writer is False


async def test_unknown_kids_cannot_flood_the_provider(clean_env: Path, jwks: JwksServer) -> None:
    verifier = TokenVerifier(_settings(jwks, jwks_min_refetch_seconds=60))
    await verifier.verify(jwks.keys[0].sign(claims("warm")))
    assert jwks.fetches == 1
    for i in range(5):
        with pytest.raises(Unauthorized, match="unknown key"):
            await verifier.verify(rsa_key(f"made-up-{i}").sign(claims("x")))
    assert jwks.fetches == 1
    await verifier.verify(jwks.keys[1].sign(claims("still fine")))


async def test_provider_down_at_first_use_is_503_then_recovers(
    clean_env: Path, jwks: JwksServer
) -> None:
    verifier = TokenVerifier(_settings(jwks, jwks_min_refetch_seconds=0))
    jwks.status = 500
    with pytest.raises(ServiceUnavailable, match="could not be fetched") as info:
        await verifier.verify(jwks.keys[0].sign(claims("u")))
    assert info.value.status_code == 503
    jwks.status = 200
    assert (await verifier.verify(jwks.keys[0].sign(claims("u")))).subject == "u"


async def test_keys_held_stay_in_use_while_the_provider_is_down(jwks: JwksServer) -> None:
    now = [1000.0]
    keys = JwksKeys(
        jwks.url,
        cache_seconds=300,
        min_refetch_seconds=10,
        timeout_seconds=2,
        clock=lambda: now[0],
    )
    assert (await keys.key_for("k1", "RS256")).algorithm_name == "RS256"
    jwks.status = 503
    now[0] += 301  # the cache is stale: a refresh is tried, fails, the old keys serve on
    assert (await keys.key_for("k1", "RS256")).algorithm_name == "RS256"
    assert jwks.fetches == 2
    await keys.key_for("k2", "ES256")  # within the refetch interval: no new attempt
    assert jwks.fetches == 2
    with pytest.raises(UnknownSigningKey, match="is for RS256, not ES256"):
        await keys.key_for("k1", "ES256")


async def test_a_slow_refresh_does_not_hold_up_requests_with_known_keys(
    jwks: JwksServer,
) -> None:
    now = [1000.0]
    keys = JwksKeys(
        jwks.url, cache_seconds=300, min_refetch_seconds=0, timeout_seconds=10, clock=lambda: now[0]
    )
    await keys.key_for("k1", "RS256")
    now[0] += 301
    jwks.hold = threading.Event()  # the provider answers the refresh only when released
    refreshing = asyncio.create_task(keys.key_for("k1", "RS256"))
    while jwks.fetches < 2:  # the refresh has reached the provider and holds the lock
        await asyncio.sleep(0.01)
    assert (await keys.key_for("k2", "ES256")).algorithm_name == "ES256"
    assert not refreshing.done()
    jwks.hold.set()
    await refreshing
    assert jwks.fetches == 2


async def test_a_document_that_is_not_a_jwks_is_an_outage(jwks: JwksServer) -> None:
    keys = JwksKeys(
        jwks.url.replace("/certs", "/missing"),
        cache_seconds=300,
        min_refetch_seconds=0,
        timeout_seconds=2,
    )
    with pytest.raises(JwksUnavailable):
        await keys.key_for("k1", "RS256")


@pytest.mark.parametrize(
    ("auth", "key"),
    [
        ({"algorithms": ["HS256"]}, "auth.algorithms"),
        ({"algorithms": ["none"]}, "auth.algorithms"),
        ({"algorithms": []}, "auth.algorithms"),
        ({"audience": ""}, "auth.audience"),
        ({"issuer": ""}, "auth.issuer"),
        ({"jwks_url": "keycloak.local/certs"}, "auth.jwks_url"),
    ],
)
def test_unsafe_oidc_configuration_is_refused(
    clean_env: Path, auth: dict[str, Any], key: str
) -> None:
    values = {"jwks_url": "https://kc.test/certs", "issuer": ISSUER, "audience": AUDIENCE}
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_settings(auth={**values, **auth})


def test_production_with_oidc_only_has_no_hs256(clean_env: Path) -> None:
    settings = load_settings(
        env="production",
        auth={"jwks_url": "https://kc.test/certs", "issuer": ISSUER, "audience": AUDIENCE},
    )
    assert settings.hs256_secret() is None
    assert TokenVerifier(settings).accepted_algorithms == ["RS256", "ES256"]


async def test_token_without_kid_needs_a_single_published_key(
    clean_env: Path, jwks: JwksServer
) -> None:
    verifier = TokenVerifier(_settings(jwks, jwks_min_refetch_seconds=0))
    only = jwks.keys[0]
    no_kid = jwt.encode(claims("solo"), only.private_key, algorithm="RS256")
    with pytest.raises(Unauthorized, match="no key id"):
        await verifier.verify(no_kid)
    jwks.serve(only)
    assert (await verifier.verify(no_kid)).subject == "solo"
