"""`pacs-ext token` shapes its claims like the configured provider (roles path, projects)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import jwt

from fixtures.server import BIN, TEST_JWT_SECRET


def test_token_follows_the_configured_claim_paths(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    env.update(
        APP_CONFIG_DIR=str(tmp_path / "none"),
        APP_SERVER__DATA_DIR=str(tmp_path / "data"),
        APP_AUTH__JWT_SECRET=TEST_JWT_SECRET,
        APP_AUTH__ROLES_CLAIM="realm_access.roles",
        APP_AUTH__PROJECTS_CLAIM="attributes.projects",
    )
    args = ["token", "sam", "--admin", "--project", "lung", "--project", "liver", "--role", "ann"]
    r = subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    claims = jwt.decode(r.stdout.strip(), TEST_JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "sam"
    assert claims["realm_access"] == {"roles": ["ann", "admin"]}
    assert claims["attributes"] == {"projects": ["lung", "liver"]}


def test_token_refuses_cleanly_when_only_oidc_is_configured(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    env.update(
        APP_CONFIG_DIR=str(tmp_path / "none"),
        APP_ENV="production",
        APP_SERVER__DATA_DIR=str(tmp_path / "data"),
        APP_AUTH__JWKS_URL="https://kc.test/realms/h/protocol/openid-connect/certs",
        APP_AUTH__ISSUER="https://kc.test/realms/h",
        APP_AUTH__AUDIENCE="pacs-ext",
    )
    r = subprocess.run(
        [str(BIN), "token", "sam"], env=env, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2
    assert "HS256 tokens are off" in r.stderr
    assert "auth.jwt_secret" in r.stderr
    assert "Traceback" not in r.stderr
