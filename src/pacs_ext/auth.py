"""Bearer JWT → Principal; the CurrentUser dependency; access rules on annotations."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated, Any

import jwt
import structlog
from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .config import Settings
from .exceptions import Forbidden, Unauthorized


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    roles: frozenset[str] = field(default_factory=frozenset)
    projects: frozenset[str] = field(default_factory=frozenset)
    is_admin: bool = False


class TokenVerifier:
    """Verifies HS256 tokens signed with the configured (or development) secret."""

    def __init__(self, settings: Settings) -> None:
        self._secret = settings.jwt_secret()
        self._auth = settings.auth

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[self._auth.jwt_algorithm],
                options={"require": ["exp", "sub"]},
                leeway=self._auth.leeway_seconds,
                audience=self._auth.audience or None,
                issuer=self._auth.issuer or None,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"invalid token: {exc}") from None
        return principal_from_claims(claims, self._auth.roles_claim, self._auth.admin_role)


def principal_from_claims(claims: dict[str, Any], roles_claim: str, admin_role: str) -> Principal:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise Unauthorized("token has no subject")
    roles = _claim_path(claims, roles_claim)
    role_set = (
        frozenset(r for r in roles if isinstance(r, str))
        if isinstance(roles, list)
        else frozenset()
    )
    return Principal(subject=subject, roles=role_set, is_admin=admin_role in role_set)


def _claim_path(claims: dict[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def create_token(
    settings: Settings, subject: str, *, admin: bool = False, ttl_seconds: int = 12 * 3600
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "roles": [settings.auth.admin_role] if admin else [],
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if settings.auth.issuer:
        claims["iss"] = settings.auth.issuer
    if settings.auth.audience:
        claims["aud"] = settings.auth.audience
    return jwt.encode(claims, settings.jwt_secret(), algorithm=settings.auth.jwt_algorithm)


_bearer = HTTPBearer(auto_error=False, description="JWT from `pacs-ext token SUBJECT`")


async def current_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing bearer token")
    verifier: TokenVerifier = request.app.state.token_verifier
    principal = verifier.verify(credentials.credentials)
    request.state.subject = principal.subject
    structlog.contextvars.bind_contextvars(subject=principal.subject)
    return principal


CurrentUser = Annotated[Principal, Depends(current_user)]


async def current_user_or_query_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    access_token: Annotated[
        str | None,
        Query(description="bearer token for <img src> use, where no header can be sent"),
    ] = None,
) -> Principal:
    if credentials is None and access_token:
        credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=access_token)
    return await current_user(request, credentials)


# For GET routes used as <img src>: the token may come as ?access_token= instead of a header.
CurrentUserOrQueryToken = Annotated[Principal, Depends(current_user_or_query_token)]


def can_read(principal: Principal, owner: str, is_shared: bool) -> bool:
    return principal.is_admin or owner == principal.subject or is_shared


def can_write(principal: Principal, owner: str) -> bool:
    return principal.is_admin or owner == principal.subject


def require_write(principal: Principal, owner: str) -> None:
    if not can_write(principal, owner):
        raise Forbidden("only the owner or an admin may change this annotation")
