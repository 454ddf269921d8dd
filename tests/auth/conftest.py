from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from fixtures.databases import database
from fixtures.oidc import AUDIENCE, ISSUER, JwksServer, SigningKey, claims, ec_key, rsa_key
from fixtures.server import ServerProcess

WRITE_ROLE = "annotator"
DB_KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@dataclass
class Idp:
    """The app configured for OIDC only (production mode, no HS256), and its provider's keys."""

    jwks: JwksServer
    server: ServerProcess
    rsa: SigningKey
    ec: SigningKey

    def token(self, subject: str | None, *, key: SigningKey | None = None, **kw: Any) -> str:
        return (key or self.rsa).sign(claims(subject, **kw))

    def client(self, subject: str, **kw: Any) -> httpx.Client:
        return httpx.Client(
            base_url=self.server.url,
            headers={"Authorization": f"Bearer {self.token(subject, **kw)}"},
            timeout=60,
        )

    def get(self, token: str, path: str = "/api/annotations") -> httpx.Response:
        return httpx.get(self.server.url + path, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture(scope="session", params=DB_KINDS)
def idp(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Idp]:
    folder = tmp_path_factory.mktemp(f"oidc-{request.param}")
    rsa, ec = rsa_key("rsa-1"), ec_key("ec-1")
    jwks = JwksServer()
    jwks.serve(rsa, ec)
    jwks.start()
    try:
        with database(request.param, folder) as url:
            env = {
                "APP_ENV": "production",
                "APP_AUTH__JWT_SECRET": "",
                "APP_OBJECT_STORAGE__SECRET_KEY": "local-store-signing-key-" + "k" * 24,
                "APP_AUTH__JWKS_URL": jwks.url,
                "APP_AUTH__ISSUER": ISSUER,
                "APP_AUTH__AUDIENCE": AUDIENCE,
                "APP_AUTH__ROLES_CLAIM": "realm_access.roles",
                "APP_AUTH__PROJECTS_CLAIM": "projects",
                "APP_AUTH__PROJECT_WRITE_ROLE": WRITE_ROLE,
                # Every unknown kid refetches here; the rate limit has its own test.
                "APP_AUTH__JWKS_MIN_REFETCH_SECONDS": "0",
            }
            srv = ServerProcess(data_dir=folder, database_url=url, extra_env=env).start()
            try:
                yield Idp(jwks, srv, rsa, ec)
            finally:
                srv.stop()
    finally:
        jwks.stop()


@pytest.fixture
def root(idp: Idp) -> Iterator[httpx.Client]:
    with idp.client("root", roles=["admin"]) as c:
        yield c
