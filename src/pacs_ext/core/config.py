"""Settings: config/default.toml, then config/{APP_ENV}.toml, then a `.env` file, then
APP_<SECTION>__<KEY> environment variables (each layer wins over the ones before it)."""

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

# Re-exported: the rest of the code knows these as core.config's.
from .config_error import ConfigError as ConfigError
from .config_files import ConfigLayers as ConfigLayers
from .config_files import DotEnvLayer
from .config_files import config_layers as config_layers

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
# Storage classes whose objects must be restored before they can be read (S3 Glacier Flexible
# Retrieval and Deep Archive); Glacier Instant Retrieval is read like STANDARD.
RESTORE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
# The tag client uploads carry when lifecycle transitions are on: the transition rule filters
# on it, so objects the server writes itself (metadata.json above all) are never archived.
TRANSITION_TAG = ("pacs-ext-lifecycle", "transition")
_MEDIA_TYPE = r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}"


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
    # SIGTERM (a rolling restart): /ready answers 503 at once and requests are still served
    # for drain_seconds, long enough for a load balancer's health checks to take the instance
    # out; then the listener closes and requests in flight get up to shutdown_timeout_seconds.
    drain_seconds: float = Field(5.0, ge=0, le=600)
    # API requests at work at once per process; more wait their turn in arrival order
    # (http/admission.py). Fewer than database.pool_size, so none waits for a connection;
    # 0: no limit.
    max_active_requests: int = Field(8, ge=0)
    # How long a request waits for a slot before it is answered 503 (Retry-After), untouched.
    admission_timeout_seconds: float = Field(30.0, gt=0, le=3600)
    shutdown_timeout_seconds: float = Field(30.0, gt=0, le=3600)

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
    # The longest a request waits for a pooled connection when all are in use; then a 503.
    pool_timeout_seconds: float = Field(30.0, gt=0, le=3600)

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
    # Outside development an http:// endpoint is refused (keys and masks in clear text)
    # unless this says the network is trusted.
    allow_insecure_endpoint: bool = False
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
    # Glacier Instant Retrieval: archived masks still download at once. GLACIER (Flexible
    # Retrieval) or DEEP_ARCHIVE cost less but a download first needs a restore (409).
    lifecycle_archive_storage_class: str = Field("GLACIER_IR", pattern=r"^[A-Z][A-Z0-9_]*$")
    lifecycle_abort_multipart_days: int = Field(7, ge=0)
    # A download of a mask in GLACIER / DEEP_ARCHIVE starts a restore for this long, this fast.
    archive_restore_days: int = Field(7, ge=1, le=365)
    archive_restore_tier: Literal["Expedited", "Standard", "Bulk"] = "Standard"
    # A bucket policy denying every request not made over TLS (aws:SecureTransport).
    tls_only_policy: bool = True
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

    @property
    def transitions_on(self) -> bool:
        return bool(self.lifecycle_ia_days or self.lifecycle_archive_days)

    @property
    def restore_needed(self) -> bool:
        """Whether archived masks must be restored before they can be read."""
        return bool(self.lifecycle_archive_days) and (
            self.lifecycle_archive_storage_class in RESTORE_CLASSES
        )


class MonitoringSettings(BaseModel):
    """What `pacs-ext storage monitoring` sets up on AWS: S3 request metrics and CloudWatch."""

    # The request-metrics configuration on the key prefix (its FilterId in CloudWatch).
    metrics_filter_id: str = Field("pacs-ext-masks", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    alarm_4xx_threshold: float = Field(5, ge=0)
    alarm_5xx_threshold: float = Field(1, ge=0)
    # Request metrics have one-minute granularity: a period is a multiple of 60 s.
    alarm_period_seconds: int = Field(300, ge=60, le=86400, multiple_of=60)
    alarm_evaluation_periods: int = Field(1, ge=1, le=100)
    # Empty: the alarms change state without notifying anyone.
    sns_topic_arn: str = Field(
        "", pattern=r"^(arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]+)?$"
    )
    # Empty: no server access logging. Else the bucket that receives the access logs.
    access_log_bucket: str = Field("", max_length=63)
    access_log_prefix: str = "s3-access-logs/"


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
    # Audit rows are exported to the bucket (recovery) once this old: fewer, larger batches.
    # (A row committed late is not skipped either way: the export works from a queue.)
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


class DicomwebSettings(BaseModel):
    """The PACS that SEG exports are stored into (STOW-RS) and source series read from."""

    # DICOMweb root, e.g. http://orthanc:8042/dicom-web; empty: exports cannot run.
    url: str = ""
    auth: Literal["none", "basic", "bearer"] = "none"
    username: str = ""
    password: SecretStr = SecretStr("")
    token: SecretStr = SecretStr("")
    timeout_seconds: float = Field(60.0, gt=0, le=3600)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        v = v.rstrip("/")
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL (or empty)")
        return v

    @model_validator(mode="after")
    def _credentials(self) -> DicomwebSettings:
        if self.auth == "basic" and not (self.username and self.password.get_secret_value()):
            raise ValueError("auth = basic needs dicomweb.username and dicomweb.password")
        if self.auth == "bearer" and not self.token.get_secret_value():
            raise ValueError("auth = bearer needs dicomweb.token")
        return self


class DicomSegSettings(BaseModel):
    """DICOM SEG exports (docs/dicom-seg.md)."""

    # A JSON label table (label → colour, category, type) used before the built-in one.
    label_table: str = ""
    # Exports built at once per server process (each holds its volume in memory).
    max_concurrent_exports: int = Field(1, ge=1, le=16)
    # Mask objects read from storage at once by one export (its worker process keeps them
    # in flight on one event loop). Reading 1,750 from Ceph RGW in bench/export_seg.py took
    # 2.5-2.8 s with 16; 32 and 64 were alike within the noise, 1.5-3.0 s.
    fetch_concurrency: int = Field(64, ge=1, le=256)
    # LABELMAP pixel data: "none" (Explicit VR Little Endian) or "rle" (RLE Lossless).
    compression: Literal["none", "rle"] = "rle"
    # How long a source series' attributes (WADO-RS metadata) are kept for the next export
    # of the same series; 0: read them for every export.
    series_cache_seconds: float = Field(600.0, ge=0, le=86400)


# The embedded database's file in data_dir. Releases between the layering refactor and this
# fix named it `pacs_ext.core.db` by mistake (a module rename that reached a string): a data
# folder holding only that file keeps using it, so nobody's database seems to vanish.
SQLITE_FILE = "pacs_ext.db"
_MISNAMED_SQLITE_FILE = "pacs_ext.core.db"


def default_sqlite_file(data_dir: Path) -> Path:
    wanted = data_dir / SQLITE_FILE
    misnamed = data_dir / _MISNAMED_SQLITE_FILE
    if not wanted.exists() and misnamed.exists():
        return misnamed
    return wanted


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
    dicomweb: DicomwebSettings = Field(default_factory=DicomwebSettings)
    dicom_seg: DicomSegSettings = Field(default_factory=DicomSegSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)

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
        layers = config_layers()
        tomls = [TomlConfigSettingsSource(settings_cls, toml_file=f) for f in layers.tomls]
        dotenv: tuple[PydanticBaseSettingsSource, ...] = ()
        if layers.env_file is not None:
            dotenv = (DotEnvLayer(settings_cls, env_file=layers.env_file),)
        return (init_settings, env_settings, *dotenv, *tomls)

    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{default_sqlite_file(self.server.data_dir).resolve()}"

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
    insecure = insecure_endpoints(settings)
    if insecure and not settings.is_development:
        raise ConfigError(
            f"{insecure[0]}: an http:// endpoint sends keys' signatures, masks and signed URLs "
            f"in clear text; use https://, or set object_storage.allow_insecure_endpoint = "
            f"true if this network is trusted (APP_ENV is {settings.env!r}, not development)"
        )
    return settings


def insecure_endpoints(settings: Settings) -> list[str]:
    """Keys naming a plain-HTTP object storage endpoint that is not explicitly allowed."""
    o = settings.object_storage
    if o.provider == "local" or o.allow_insecure_endpoint:
        return []
    keys = ("endpoint", "public_endpoint")
    return [f"object_storage.{k}" for k in keys if getattr(o, k).startswith("http://")]


@lru_cache
def get_settings() -> Settings:
    return load_settings()
