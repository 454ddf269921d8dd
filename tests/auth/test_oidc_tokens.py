"""OIDC tokens against the real server: keys from a JWKS on loopback, every way a token fails."""

from __future__ import annotations

import time

import pytest

from fixtures.oidc import claims, forge, rsa_key
from fixtures.server import make_token

from .conftest import Idp


def _refused(idp: Idp, token: str, fragment: str) -> None:
    r = idp.get(token)
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "Unauthorized"
    assert fragment.lower() in r.json()["detail"].lower()
    assert r.headers["www-authenticate"] == "Bearer"


def test_valid_rs256_and_es256_tokens_are_accepted(idp: Idp) -> None:
    for key in (idp.rsa, idp.ec):
        r = idp.get(idp.token(f"user-{key.kid}", key=key))
        assert r.status_code == 200, r.text
    with idp.client("owner-1") as c:
        r = c.post("/api/annotations", json={"study_instance_uid": "1.2.3"})
        assert r.status_code == 201
        assert r.json()["owner"] == "owner-1"


def test_expired_token_is_refused_but_small_skew_is_tolerated(idp: Idp) -> None:
    _refused(idp, idp.token("late", ttl=-120), "expired")
    # Within the 30 s leeway: a clock slightly ahead of the IdP's still accepts it.
    assert idp.get(idp.token("skewed", ttl=-5)).status_code == 200


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"iss": "https://evil.test/realms/hospital"}, "issuer"),
        ({"aud": "another-client"}, "audience"),
        ({"aud": None}, "aud"),
        ({"iss": None}, "iss"),
    ],
)
def test_wrong_issuer_or_audience_is_refused(idp: Idp, change: dict, fragment: str) -> None:
    payload = claims("mallory")
    for k, v in change.items():
        if v is None:
            payload.pop(k)
        else:
            payload[k] = v
    _refused(idp, idp.rsa.sign(payload), fragment)


def test_unknown_kid_refetches_once_then_rotated_key_is_accepted(idp: Idp) -> None:
    assert idp.get(idp.token("warm-up")).status_code == 200
    rotated = rsa_key(f"rsa-rotated-{time.monotonic_ns()}")
    before = idp.jwks.fetches
    # Signed with a key the provider does not publish yet: one refetch, still unknown.
    _refused(idp, idp.token("early", key=rotated), "unknown key")
    assert idp.jwks.fetches == before + 1
    # The provider rotates: the new key is published beside the old ones.
    idp.jwks.serve(idp.rsa, idp.ec, rotated)
    try:
        assert idp.get(idp.token("rotated", key=rotated)).status_code == 200
        assert idp.jwks.fetches == before + 2
        # Known keys come from the cache: no further fetch.
        assert idp.get(idp.token("again", key=rotated)).status_code == 200
        assert idp.get(idp.token("old-key")).status_code == 200
        assert idp.jwks.fetches == before + 2
    finally:
        idp.jwks.serve(idp.rsa, idp.ec)


def test_alg_none_is_refused(idp: Idp) -> None:
    token = forge({"alg": "none", "typ": "JWT"}, claims("root", roles=["admin"]), None)
    _refused(idp, token, "not accepted")
    token = forge({"alg": "none", "kid": idp.rsa.kid}, claims("root", roles=["admin"]), None)
    _refused(idp, token, "not accepted")


def test_hs256_signed_with_the_rsa_public_key_is_refused(idp: Idp) -> None:
    header = {"alg": "HS256", "typ": "JWT", "kid": idp.rsa.kid}
    token = forge(header, claims("root", roles=["admin"]), idp.rsa.public_pem())
    _refused(idp, token, "not accepted")
    # And the plain development token: HS256 is off when only OIDC is configured.
    _refused(idp, make_token("alice"), "not accepted")


def test_key_of_another_type_or_a_forged_signature_is_refused(idp: Idp) -> None:
    # RS256 header naming the EC key: that key cannot verify RS256.
    attacker = rsa_key(idp.ec.kid)
    _refused(idp, attacker.sign(claims("root", roles=["admin"])), "ES256")
    # The real kid, signed by someone else's private key.
    attacker = rsa_key(idp.rsa.kid)
    _refused(idp, attacker.sign(claims("root", roles=["admin"])), "invalid token")


def test_missing_subject_is_refused(idp: Idp) -> None:
    _refused(idp, idp.token(None), "no subject")
    _refused(idp, idp.token(""), "no subject")
    _refused(idp, idp.token("x" * 300), "longer than 255")


def test_garbage_tokens_are_401_not_500(idp: Idp) -> None:
    for token in ("not-a-jwt", "a.b.c", forge({"alg": "RS256", "kid": 5}, claims("x"), b"k")):
        assert idp.get(token).status_code == 401


def test_admin_comes_from_the_configured_roles_claim_path(idp: Idp) -> None:
    # "roles" at the top level is not where this server looks (realm_access.roles).
    payload = claims("fake-admin", roles=[])
    payload["roles"] = ["admin"]
    token = idp.rsa.sign(payload)
    assert idp.get(token, "/api/audit").status_code == 403
    assert idp.get(idp.token("real-admin", roles=["admin"]), "/api/audit").status_code == 200


def test_tokens_never_reach_the_log(idp: Idp) -> None:
    token = idp.token("logged")
    assert idp.get(token).status_code == 200
    assert idp.get(token + "x").status_code == 401
    log = idp.server.log_path.read_text()
    assert token.split(".")[2] not in log
    assert "auth.jwks_fetched" in log
