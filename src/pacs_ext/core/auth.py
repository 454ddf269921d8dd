"""Bearer JWT (HS256 or OIDC/JWKS) → Principal; the CurrentUser dependency; access rules."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated, Any

import jwt
import structlog
from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jwt import PyJWK

from .config import AuthSettings, Settings
from .errors import Forbidden, ServiceUnavailable, Unauthorized
from .jwks import JwksKeys, JwksUnavailable, UnknownSigningKey


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    roles: frozenset[str] = field(default_factory=frozenset)
    projects: frozenset[str] = field(default_factory=frozenset)
    is_admin: bool = False
    # Holds the configured project write role: project membership grants write, not only read.
    project_writer: bool = False


# Subjects and project ids are stored in String(255) columns.
MAX_ID_LENGTH = 255


class TokenVerifier:
    """HS256 tokens signed with the configured secret, and OIDC tokens checked against a JWKS.

    The token header's `alg` picks the path, and each path has its own pinned list, so `none`,
    and an HS256 token "signed" with the provider's public key, are both refused.
    """

    def __init__(self, settings: Settings) -> None:
        self._auth = settings.auth
        self._secret = settings.hs256_secret()
        self._jwks = (
            JwksKeys(
                self._auth.jwks_url,
                cache_seconds=self._auth.jwks_cache_seconds,
                min_refetch_seconds=self._auth.jwks_min_refetch_seconds,
                timeout_seconds=self._auth.jwks_timeout_seconds,
            )
            if self._auth.jwks_url
            else None
        )

    @property
    def accepted_algorithms(self) -> list[str]:
        hs = [self._auth.jwt_algorithm] if self._secret else []
        return hs + (list(self._auth.algorithms) if self._jwks else [])

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"invalid token: {exc}") from None
        alg = header.get("alg")
        key, algorithm = await self._key_for(alg, header.get("kid"))
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                options={"require": ["exp"], "enforce_minimum_key_length": True},
                leeway=self._auth.leeway_seconds,
                audience=self._auth.audience or None,
                issuer=self._auth.issuer or None,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"invalid token: {exc}") from None
        return principal_from_claims(claims, self._auth)

    async def _key_for(self, alg: Any, kid: str | None) -> tuple[str | PyJWK, str]:
        if alg == self._auth.jwt_algorithm and self._secret:
            return self._secret, alg
        if self._jwks is not None and isinstance(alg, str) and alg in self._auth.algorithms:
            try:
                return await self._jwks.key_for(kid, alg), alg
            except UnknownSigningKey as exc:
                raise Unauthorized(str(exc)) from None
            except JwksUnavailable as exc:
                raise ServiceUnavailable(f"cannot verify the token now: {exc}; retry") from None
        accepted = ", ".join(self.accepted_algorithms) or "none configured"
        raise Unauthorized(f"token algorithm {alg!r} is not accepted (accepted: {accepted})")


def principal_from_claims(claims: dict[str, Any], auth: AuthSettings) -> Principal:
    subject = _claim_path(claims, auth.subject_claim)
    if not isinstance(subject, str) or not subject.strip():
        raise Unauthorized(f"token has no subject (claim {auth.subject_claim!r})")
    if len(subject) > MAX_ID_LENGTH:
        raise Unauthorized(f"token subject is longer than {MAX_ID_LENGTH} characters")
    if not subject.isprintable():
        # NUL cannot be stored (PostgreSQL text) and newlines forge log lines and audit rows.
        raise Unauthorized("token subject must not contain control characters")
    roles = _strings(_claim_path(claims, auth.roles_claim))
    return Principal(
        subject=subject,
        roles=roles,
        projects=_strings(_claim_path(claims, auth.projects_claim)),
        is_admin=auth.admin_role in roles,
        project_writer=bool(auth.project_write_role) and auth.project_write_role in roles,
    )


def _strings(value: Any) -> frozenset[str]:
    """A claim holding one string or a list of strings (Keycloak mappers produce both)."""
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    return frozenset(v for v in items if isinstance(v, str) and 0 < len(v) <= MAX_ID_LENGTH)


def _claim_path(claims: dict[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _set_path(claims: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = claims
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def create_token(
    settings: Settings,
    subject: str,
    *,
    admin: bool = False,
    projects: list[str] | None = None,
    roles: list[str] | None = None,
    ttl_seconds: int = 12 * 3600,
) -> str:
    """An HS256 token shaped like the configured claims (subject, roles and projects paths)."""
    auth = settings.auth
    now = int(time.time())
    claims: dict[str, Any] = {"iat": now, "exp": now + ttl_seconds}
    _set_path(claims, auth.subject_claim, subject)
    _set_path(claims, auth.roles_claim, [*(roles or []), *([auth.admin_role] if admin else [])])
    if projects:
        _set_path(claims, auth.projects_claim, projects)
    if auth.issuer:
        claims["iss"] = auth.issuer
    if auth.audience:
        claims["aud"] = auth.audience
    return jwt.encode(claims, settings.jwt_secret(), algorithm=auth.jwt_algorithm)


_bearer = HTTPBearer(
    auto_error=False,
    description="JWT from the identity provider (OIDC), or from `pacs-ext token SUBJECT`",
)


async def current_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing bearer token")
    verifier: TokenVerifier = request.app.state.token_verifier
    principal = await verifier.verify(credentials.credentials)
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


def in_project(principal: Principal, project_id: str | None) -> bool:
    return project_id is not None and project_id in principal.projects


def can_read(
    principal: Principal, owner: str, is_shared: bool, project_id: str | None = None
) -> bool:
    return (
        principal.is_admin
        or owner == principal.subject
        or is_shared
        or in_project(principal, project_id)
    )


def can_write(principal: Principal, owner: str, project_id: str | None = None) -> bool:
    return (
        principal.is_admin
        or owner == principal.subject
        or (principal.project_writer and in_project(principal, project_id))
    )


def require_write(principal: Principal, owner: str, project_id: str | None = None) -> None:
    if not can_write(principal, owner, project_id):
        raise Forbidden("only the owner, an admin or a project writer may change this annotation")


def require_owner(principal: Principal, owner: str, what: str) -> None:
    """Sharing decisions stay with the owner: project writers may not make them."""
    if not (principal.is_admin or owner == principal.subject):
        raise Forbidden(f"only the owner or an admin may change {what}")


def require_project_member(principal: Principal, project_id: str | None) -> None:
    if project_id is not None and not principal.is_admin and project_id not in principal.projects:
        raise Forbidden(f"your token does not list project {project_id!r}")
