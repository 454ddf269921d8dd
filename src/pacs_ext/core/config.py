"""Settings: config/default.toml, then config/{APP_ENV}.toml, then APP_<SECTION>__<KEY> env vars."""

from __future__ import annotations

import os
import re
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

MiB = 1024 * 1024
# object_storage.allowed_content_types by default: masks as PNG/JPEG, DICOM (SEG exports), NIfTI
# (.nii as octet-stream or x-nifti, .nii.gz as gzip), JSON documents. Never HTML or SVG: the
# local store serves objects from the API's own origin.
DEFAULT_ALLOWED_CONTENT_TYPES = (
    "image/png",
    "image/jpeg",
    "application/dicom",
    "application/x-nifti",
    "application/gzip",
    "application/x-gzip",
    "application/octet-stream",
    "application/json",
)
_MEDIA_TYPE = r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}"


class ConfigError(Exception):
    """A configuration value is missing or invalid; the message names the key."""


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    data_dir: Path = Path("./data")
    cors_allowed_origins: list[str] = Field(default_factory=list)
    # Base URL clients use to reach this server (local store URLs); empty: http://host:port.
    public_url: str = ""
    workers: int = Field(1, ge=1)
    # How long an idle keep-alive connection stays open: longer than every client pool and
    # load balancer in front of the server keeps one, or they send on a closing connection.
    keepalive_timeout_seconds: int = Field(75, ge=1, le=3600)

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        return v.rstrip("/")

    def base_url(self) -> str:
        if self.public_url:
            return self.public_url
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"


class DatabaseSettings(BaseModel):
    # Empty: SQLite file in data_dir.
    url: str = ""
    echo: bool = False
    pool_size: int = Field(10, ge=1)
    # A database that accepts connections but never answers (a stuck proxy, a failover) fails
    # requests with a 503 after these, not after asyncpg's 60 s. Connect: PostgreSQL only.
    # Statement: any one statement's answer (PostgreSQL), the wait for a lock (SQLite).
    connect_timeout_seconds: float = Field(5.0, gt=0, le=300)
    statement_timeout_seconds: float = Field(30.0, gt=0, le=3600)

    @field_validator("url")
    @classmethod
    def _known_driver(cls, v: str) -> str:
        if v and not v.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "must start with sqlite+aiosqlite:// or postgresql+asyncpg:// (or be empty)"
            )
        return v


# Asymmetric algorithms only: a JWKS holds public keys, and HS* with a public key as the
# HMAC secret is the classic algorithm-confusion forgery.
JwksAlgorithm = Literal[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"
]

_DEFAULT_JWKS_ALGORITHMS: list[JwksAlgorithm] = ["RS256", "ES256"]


class AuthSettings(BaseModel):
    # HS256 tokens (development, tests, `pacs-ext token`): accepted when a secret is set, or
    # in development with the generated one.
    jwt_secret: SecretStr = SecretStr("")
    jwt_algorithm: Literal["HS256"] = "HS256"
    # OIDC tokens (Keycloak and others), verified with the provider's published keys.
    jwks_url: str = ""
    algorithms: list[JwksAlgorithm] = Field(default_factory=lambda: list(_DEFAULT_JWKS_ALGORITHMS))
    jwks_cache_seconds: int = Field(300, ge=1, le=86400)
    # Least time between two JWKS fetches, so tokens with made-up key ids cannot flood the IdP.
    jwks_min_refetch_seconds: float = Field(10.0, ge=0, le=3600)
    jwks_timeout_seconds: float = Field(5.0, gt=0, le=60)
    issuer: str = ""
    audience: str = ""
    # Dotted paths into the token's claims, e.g. Keycloak's "realm_access.roles".
    subject_claim: str = Field("sub", min_length=1)
    roles_claim: str = Field("roles", min_length=1)
    projects_claim: str = Field("projects", min_length=1)
    admin_role: str = Field("admin", min_length=1)
    # Role that turns project membership into write access; empty: projects grant read only.
    project_write_role: str = ""
    leeway_seconds: int = Field(30, ge=0, le=300)

    @field_validator("jwt_secret")
    @classmethod
    def _long_enough(cls, v: SecretStr) -> SecretStr:
        if v.get_secret_value() and len(v.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters (HS256 needs a 256-bit key)")
        return v

    @field_validator("jwks_url")
    @classmethod
    def _jwks_url(cls, v: str) -> str:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL (or empty)")
        return v

    @field_validator("algorithms")
    @classmethod
    def _some_algorithms(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError('must list at least one algorithm, e.g. ["RS256"]')
        return v

    @model_validator(mode="after")
    def _jwks_needs_issuer_and_audience(self) -> AuthSettings:
        # Without both, any token the provider issues for any client would be accepted.
        if self.jwks_url and not (self.issuer and self.audience):
            missing = " and ".join(
                f"auth.{k}" for k in ("issuer", "audience") if not getattr(self, k)
            )
            raise ValueError(f"{missing}: required when auth.jwks_url is set")
        return self


class ObjectStorageSettings(BaseModel):
    provider: Literal["local", "s3", "minio"] = "local"
    bucket_name: str = Field("pacs-masks", min_length=3, max_length=63)
    region: str = "us-east-1"
    endpoint: str = ""
    public_endpoint: str = ""
    access_key: str = ""
    secret_key: SecretStr = SecretStr("")
    session_token: SecretStr = SecretStr("")
    key_prefix: str = "mask/"
    sse: Literal["", "AES256"] = ""
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    checksum_sha256: bool = False
    multipart_threshold: int = Field(64 * MiB, ge=5 * MiB)
    multipart_part_size: int = Field(16 * MiB, ge=5 * MiB, le=5 * 1024 * MiB)
    # Folder of a pre-migration local mask tree served for masks not yet in object storage.
    legacy_local_dir: str = ""
    # Content types a file may be declared with; anything else is a 422 naming these.
    allowed_content_types: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ALLOWED_CONTENT_TYPES), min_length=1
    )

    @field_validator("allowed_content_types")
    @classmethod
    def _content_types(cls, v: list[str]) -> list[str]:
        out = [t.strip().lower() for t in v]
        bad = [t for t in out if not re.fullmatch(_MEDIA_TYPE, t)]
        if bad:
            raise ValueError(f"not a media type such as image/png: {bad[0]!r}")
        return out

    @field_validator("key_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        v = v.strip("/")
        if not v or any(seg in ("", ".", "..") for seg in v.split("/")):
            raise ValueError("must be a non-empty path such as 'mask/'")
        return v + "/"

    @field_validator("endpoint", "public_endpoint")
    @classmethod
    def _url(cls, v: str) -> str:
        v = v.rstrip("/")
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL (or empty)")
        return v

    @model_validator(mode="after")
    def _key_pair(self) -> ObjectStorageSettings:
        if self.provider != "local" and bool(self.access_key) != bool(
            self.secret_key.get_secret_value()
        ):
            raise ValueError(
                "access_key and secret_key: set both, or neither to use the AWS credential chain"
            )
        return self


class BucketSettings(BaseModel):
    """What `pacs-ext storage init` applies to the bucket; 0 days switches that part off."""

    lifecycle_ia_days: int = Field(90, ge=0)
    lifecycle_ia_storage_class: str = Field("STANDARD_IA", pattern=r"^[A-Z][A-Z0-9_]*$")
    lifecycle_archive_days: int = Field(365, ge=0)
    lifecycle_archive_storage_class: str = Field("GLACIER", pattern=r"^[A-Z][A-Z0-9_]*$")
    lifecycle_abort_multipart_days: int = Field(7, ge=0)
    default_encryption: bool = True  # SSE-S3 (AES256) as the bucket default
    block_public_access: bool = True
    manage_cors: bool = True  # CORS for server.cors_allowed_origins

    @model_validator(mode="after")
    def _transition_order(self) -> BucketSettings:
        ia, archive = self.lifecycle_ia_days, self.lifecycle_archive_days
        if ia and archive and archive <= ia:
            raise ValueError(
                f"lifecycle_archive_days ({archive}) must be after lifecycle_ia_days ({ia})"
            )
        return self


class SignedUrlSettings(BaseModel):
    default_ttl: int = Field(600, ge=1)
    max_ttl: int = Field(3600, ge=1, le=7 * 24 * 3600)
    # Upload URLs one request may have signed (a single PUT is one, each part URL one).
    max_urls_per_request: int = Field(10_000, ge=1)
    # Upload URLs signed for one group over its life (renewals and part pages included).
    max_urls_per_group: int = Field(100_000, ge=1)
    # Part URLs of one multipart file per answer; further pages on request (upload-urls).
    part_urls_per_page: int = Field(1_000, ge=1, le=10_000)

    @model_validator(mode="after")
    def _order(self) -> SignedUrlSettings:
        if self.default_ttl > self.max_ttl:
            raise ValueError(
                f"default_ttl ({self.default_ttl}) must not exceed max_ttl ({self.max_ttl})"
            )
        return self


class LoggingSettings(BaseModel):
    format: Literal["json", "console"] = "json"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class JanitorSettings(BaseModel):
    # Periodic janitor inside the server (on by default: a signed PUT replayed after a DELETE
    # can leave an orphan on S3, and nothing else removes it); 0: off (cron `pacs-ext janitor`).
    interval_seconds: int = Field(900, ge=0)
    # How long past its URLs' expiry a pending group is kept, and how old an object with no
    # database record must be before it counts as an orphan.
    grace_seconds: int = Field(3600, ge=0)
    # false: the periodic run only reports (logs and metrics).
    apply: bool = True
    # Idempotency-Key records of group creations older than this are forgotten.
    idempotency_retention_seconds: int = Field(86400, ge=60)
    # A deleted annotation, group or mask is remembered this long, so a retried DELETE
    # (its first answer lost) gets 204 rather than 404; the janitor prunes older ones.
    tombstone_retention_seconds: int = Field(86400, ge=60)
    # Audit rows are exported to the bucket (recovery) once this old, so that transactions
    # holding lower ids have committed first.
    audit_export_settle_seconds: int = Field(60, ge=0)


class LimitsSettings(BaseModel):
    """Bounds on client input; over one is a 413/422 that names the key."""

    # Bytes of one request body to the API (the local store's PUT is bounded by its signed
    # Content-Length instead).
    max_body_bytes: int = Field(16 * MiB, ge=1024)
    # Files declared in one mask group, over all its create and upload-urls calls.
    max_files_per_group: int = Field(100_000, ge=1)
    # An annotation's `data` (and `measurement_values`): bytes of its JSON, nesting depth.
    annotation_data_max_bytes: int = Field(1 * MiB, ge=2)
    annotation_data_max_depth: int = Field(32, ge=1, le=200)
    # File names a 409 of `complete` lists per kind (missing, mismatched); counts are exact.
    conflict_max_names: int = Field(1000, ge=0)


class MetricsSettings(BaseModel):
    # Empty: /metrics needs no token. Set: scrapes send `Authorization: Bearer <token>`.
    token: SecretStr = SecretStr("")
    # port 0: /metrics is served by the API's listener. Otherwise only by a listener of its
    # own on host:port (e.g. an internal interface), and the API's /metrics answers 404.
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="APP_",
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    env: str = "development"
    server: ServerSettings = Field(default_factory=ServerSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    object_storage: ObjectStorageSettings = Field(default_factory=ObjectStorageSettings)
    signed_url: SignedUrlSettings = Field(default_factory=SignedUrlSettings)
    bucket: BucketSettings = Field(default_factory=BucketSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    janitor: JanitorSettings = Field(default_factory=JanitorSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)

    @property
    def is_development(self) -> bool:
        return self.env in ("development", "dev", "test")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_dir = Path(os.environ.get("APP_CONFIG_DIR", "config"))
        app_env = os.environ.get("APP_ENV", "development")
        files = [config_dir / f"{app_env}.toml", config_dir / "default.toml"]
        tomls = [TomlConfigSettingsSource(settings_cls, toml_file=f) for f in files if f.is_file()]
        return (init_settings, env_settings, *tomls)

    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{(self.server.data_dir / 'pacs_ext.core.db').resolve()}"

    def jwt_secret(self) -> str:
        """The HS256 secret; in development generated once and kept in data_dir."""
        configured = self.auth.jwt_secret.get_secret_value()
        if configured:
            return configured
        return _dev_secret(self, "jwt_secret", ".jwt_secret")

    def hs256_secret(self) -> str | None:
        """The HS256 secret, or None when HS256 tokens are off (JWKS only, not development)."""
        if self.auth.jwt_secret.get_secret_value() or self.is_development:
            return self.jwt_secret()
        return None

    def local_storage_secret(self) -> bytes:
        """HMAC key of the local object store's signed URLs."""
        configured = self.object_storage.secret_key.get_secret_value()
        if configured:
            return configured.encode()
        return _dev_secret(self, "object_storage.secret_key", ".local_storage_secret").encode()


def _dev_secret(settings: Settings, key: str, filename: str) -> str:
    if not settings.is_development:
        raise ConfigError(f"{key}: must be set when APP_ENV is {settings.env!r} (not development)")
    path = settings.server.data_dir / filename
    if path.is_file():
        value = path.read_text().strip()
        if value:
            return value
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    # O_EXCL: two workers starting together agree on one secret.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


def format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "settings"
        value = err.get("input")
        shown = "" if isinstance(value, dict) or "secret" in key else f" (got {value!r})"
        lines.append(f"{key}: {err['msg']}{shown}")
    return "; ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Build settings or raise ConfigError with one line naming the key and the problem."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    secret = settings.auth.jwt_secret.get_secret_value()
    if not settings.is_development and not secret and not settings.auth.jwks_url:
        raise ConfigError(
            f"auth.jwt_secret: must be set when APP_ENV is {settings.env!r} (not development)"
        )
    return settings


@lru_cache
def get_settings() -> Settings:
    return load_settings()
