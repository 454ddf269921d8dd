"""Settings: TOML layers, APP_ env vars, fail-fast messages naming the key, secrets."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from fixtures.server import BIN
from pacs_ext.core.config import ConfigError, load_settings


@pytest.fixture
def config_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    import os

    for key in list(os.environ):
        if key.startswith("APP_"):
            monkeypatch.delenv(key)
    cfg = tmp_path / "config"
    cfg.mkdir()
    monkeypatch.setenv("APP_CONFIG_DIR", str(cfg))
    monkeypatch.setenv("APP_SERVER__DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("APP_ENV_FILE", "")  # a developer's ./.env stays out of these tests
    return cfg


def test_defaults(config_env: Path) -> None:
    s = load_settings()
    assert s.signed_url.default_ttl == 600
    assert s.signed_url.max_ttl == 3600
    assert s.object_storage.provider == "local"
    assert s.object_storage.bucket_name == "pacs-masks"
    assert s.object_storage.key_prefix == "mask/"
    assert s.server.port == 8000


def test_the_embedded_database_is_pacs_ext_db_in_data_dir(config_env: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    assert load_settings().database_url() == f"sqlite+aiosqlite:///{data.resolve()}/pacs_ext.db"


def test_a_data_dir_holding_only_the_misnamed_database_keeps_it(
    config_env: Path, tmp_path: Path
) -> None:
    """Releases since the layering refactor named the file pacs_ext.core.db: upgrading must not
    start on a new, empty database beside the user's."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "pacs_ext.core.db").write_bytes(b"")
    assert load_settings().database_url().endswith("/pacs_ext.core.db")
    (data / "pacs_ext.db").write_bytes(b"")  # both present: the documented name wins
    assert load_settings().database_url().endswith("/pacs_ext.db")


def test_repository_default_toml_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_CONFIG_DIR", str(Path(__file__).parent.parent / "config"))
    s = load_settings()
    assert s.object_storage.provider == "local"
    assert s.signed_url.default_ttl == 600


def test_layers_default_then_env_file_then_env_vars(
    config_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (config_env / "default.toml").write_text(
        '[object_storage]\nprovider = "s3"\nbucket_name = "from-default"\nregion = "eu-west-1"\n'
        "[signed_url]\ndefault_ttl = 300\n"
    )
    (config_env / "staging.toml").write_text('[object_storage]\nbucket_name = "from-staging"\n')
    monkeypatch.setenv("APP_ENV", "staging")
    monkeypatch.setenv("APP_AUTH__JWT_SECRET", "s" * 40)
    monkeypatch.setenv("APP_OBJECT_STORAGE__REGION", "ap-northeast-2")
    s = load_settings()
    assert s.env == "staging"
    assert s.object_storage.provider == "s3"
    assert s.object_storage.bucket_name == "from-staging"
    assert s.object_storage.region == "ap-northeast-2"
    assert s.signed_url.default_ttl == 300


def test_spec_environment_names(config_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "APP_OBJECT_STORAGE__PROVIDER": "minio",
        "APP_OBJECT_STORAGE__BUCKET_NAME": "pacs-masks",
        "APP_OBJECT_STORAGE__REGION": "us-east-1",
        "APP_OBJECT_STORAGE__ENDPOINT": "http://localhost:9000",
        "APP_OBJECT_STORAGE__ACCESS_KEY": "minioadmin",
        "APP_OBJECT_STORAGE__SECRET_KEY": "minioadmin",
        "APP_SIGNED_URL__DEFAULT_TTL": "120",
        "APP_SIGNED_URL__MAX_TTL": "1800",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = load_settings()
    assert s.object_storage.provider == "minio"
    assert s.object_storage.endpoint == "http://localhost:9000"
    assert s.object_storage.access_key == "minioadmin"
    assert s.object_storage.secret_key.get_secret_value() == "minioadmin"
    assert (s.signed_url.default_ttl, s.signed_url.max_ttl) == (120, 1800)


@pytest.mark.parametrize(
    ("var", "value", "key"),
    [
        ("APP_OBJECT_STORAGE__PROVIDER", "gcs", "object_storage.provider"),
        ("APP_SIGNED_URL__DEFAULT_TTL", "ten", "signed_url.default_ttl"),
        ("APP_SIGNED_URL__DEFAULT_TTL", "7200", "default_ttl"),
        ("APP_SERVER__PORT", "70000", "server.port"),
        ("APP_OBJECT_STORAGE__ENDPOINT", "localhost:9000", "object_storage.endpoint"),
        ("APP_OBJECT_STORAGE__KEY_PREFIX", "../x", "object_storage.key_prefix"),
        ("APP_DATABASE__URL", "mysql://x", "database.url"),
        ("APP_AUTH__JWT_SECRET", "short", "auth.jwt_secret"),
    ],
)
def test_invalid_value_names_the_key(
    config_env: Path, monkeypatch: pytest.MonkeyPatch, var: str, value: str, key: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert key in str(info.value)
    assert "\n" not in str(info.value)
    if "SECRET" in var:
        assert value not in str(info.value)


def test_cli_start_up_with_invalid_value_is_one_line(config_env: Path, tmp_path: Path) -> None:
    import os

    env = {**os.environ, "APP_OBJECT_STORAGE__PROVIDER": "gcs"}
    r = subprocess.run([str(BIN), "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert "object_storage.provider" in lines[0]
    assert "Traceback" not in r.stderr


def test_development_secret_is_generated_once_and_kept(config_env: Path, tmp_path: Path) -> None:
    s = load_settings()
    first = s.jwt_secret()
    assert len(first) >= 32
    assert load_settings().jwt_secret() == first
    path = tmp_path / "data" / ".jwt_secret"
    assert path.read_text() == first
    assert path.stat().st_mode & 0o077 == 0


def test_outside_development_an_empty_secret_refuses_start(
    config_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    with pytest.raises(ConfigError, match=r"auth\.jwt_secret"):
        load_settings()
    monkeypatch.setenv("APP_AUTH__JWT_SECRET", "p" * 48)
    assert load_settings().jwt_secret() == "p" * 48


SECRET = "s" * 40


def test_dotenv_sits_between_the_toml_files_and_the_environment(
    config_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (config_env / "default.toml").write_text(
        '[object_storage]\nbucket_name = "from-default"\nregion = "eu-west-1"\n'
        'endpoint = "https://s3.default.test"\n'
    )
    (config_env / "staging.toml").write_text('[object_storage]\nregion = "from-staging"\n')
    # The spec's .env: APP_ENV there picks config/staging.toml; non-APP_ lines are ignored.
    (tmp_path / ".env").write_text(
        f"APP_ENV=staging\nAPP_AUTH__JWT_SECRET={SECRET}\nAWS_PROFILE=ignored\n"
        "APP_OBJECT_STORAGE__PROVIDER=s3\nAPP_OBJECT_STORAGE__BUCKET_NAME=from-dotenv\n"
        "APP_OBJECT_STORAGE__REGION=from-dotenv\nAPP_SIGNED_URL__DEFAULT_TTL=120\n"
    )
    monkeypatch.delenv("APP_ENV_FILE")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("APP_OBJECT_STORAGE__REGION", "ap-northeast-2")
    s = load_settings()
    assert s.env == "staging"
    assert s.object_storage.provider == "s3"
    assert s.object_storage.bucket_name == "from-dotenv"  # .env over the TOML files
    assert s.object_storage.region == "ap-northeast-2"  # the environment over .env
    assert s.object_storage.endpoint == "https://s3.default.test"
    assert s.signed_url.default_ttl == 120
    monkeypatch.setenv("APP_ENV_FILE", "")  # empty: no file
    assert load_settings().object_storage.provider == "local"


def test_env_file_path_is_overridable_and_a_typo_in_it_names_the_line(
    config_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / "pacs.env"
    env_file.write_text("APP_OBJECT_STORAGE__PROVIDER=minio\n")
    monkeypatch.setenv("APP_ENV_FILE", str(env_file))
    assert load_settings().object_storage.provider == "minio"
    env_file.write_text("APP_OBJECT_STORAGE__BUKET_NAME=x\n")
    with pytest.raises(ConfigError, match=r"pacs\.env: APP_OBJECT_STORAGE__BUKET_NAME is not a"):
        load_settings()
    env_file.write_text("APP_OBJECT_STORAGE__PROVIDER=gcs\n")
    with pytest.raises(ConfigError, match=r"object_storage\.provider"):
        load_settings()
    monkeypatch.setenv("APP_ENV_FILE", str(tmp_path / "missing.env"))
    with pytest.raises(ConfigError, match=r"APP_ENV_FILE: .*missing\.env is not a file"):
        load_settings()


@pytest.mark.parametrize("key", ["endpoint", "public_endpoint"])
def test_a_plain_http_endpoint_is_refused_outside_development(
    config_env: Path, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    monkeypatch.setenv("APP_OBJECT_STORAGE__PROVIDER", "s3")
    monkeypatch.setenv(f"APP_OBJECT_STORAGE__{key.upper()}", "http://rgw.internal:7480")
    assert load_settings().object_storage.provider == "s3"  # development: allowed
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("APP_AUTH__JWT_SECRET", SECRET)
    with pytest.raises(ConfigError, match=rf"^object_storage\.{key}: an http:// endpoint"):
        load_settings()
    monkeypatch.setenv("APP_OBJECT_STORAGE__ALLOW_INSECURE_ENDPOINT", "true")
    assert load_settings().object_storage.allow_insecure_endpoint
    monkeypatch.setenv("APP_OBJECT_STORAGE__ALLOW_INSECURE_ENDPOINT", "false")
    monkeypatch.setenv(f"APP_OBJECT_STORAGE__{key.upper()}", "https://rgw.internal")
    assert load_settings().object_storage.provider == "s3"


def test_start_up_summary_names_storage_and_sources_never_secrets(
    config_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pacs_ext.app import storage_summary

    (config_env / "default.toml").write_text('[object_storage]\nregion = "ap-northeast-2"\n')
    monkeypatch.setenv("APP_OBJECT_STORAGE__PROVIDER", "s3")
    monkeypatch.setenv("APP_OBJECT_STORAGE__ACCESS_KEY", "AKIAEXAMPLE")
    monkeypatch.setenv("APP_OBJECT_STORAGE__SECRET_KEY", "very-secret-value")
    summary = storage_summary(load_settings())
    assert summary == {
        "storage": "s3",
        "config": f"{config_env / 'default.toml'}, environment",
        "bucket": "pacs-masks",
        "region": "ap-northeast-2",
        "endpoint": "AWS S3 (ap-northeast-2)",
        "credentials": "static access key",
    }
    assert "very-secret-value" not in str(summary)
    assert "AKIAEXAMPLE" not in str(summary)


def test_the_production_example_loads_as_aws_over_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("APP_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("APP_CONFIG_DIR", str(Path(__file__).parent.parent / "config"))
    monkeypatch.setenv("APP_ENV_FILE", "")
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("APP_AUTH__JWT_SECRET", SECRET)
    s = load_settings()
    o = s.object_storage
    assert (o.provider, o.region, o.endpoint, o.sse) == ("s3", "ap-northeast-2", "", "AES256")
    assert s.database.url.startswith("postgresql+asyncpg://")
    assert s.bucket.lifecycle_archive_storage_class == "GLACIER_IR"
    # Pointing it at a plain-HTTP store is refused there.
    monkeypatch.setenv("APP_OBJECT_STORAGE__ENDPOINT", "http://minio:9000")
    with pytest.raises(ConfigError, match=r"object_storage\.endpoint: an http:// endpoint"):
        load_settings()


def test_the_cli_reads_dotenv_from_its_working_directory(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    env["APP_CONFIG_DIR"] = str(tmp_path / "none")
    (tmp_path / ".env").write_text(
        "APP_OBJECT_STORAGE__PROVIDER=s3\nAPP_OBJECT_STORAGE__BUCKET_NAME=from-dotenv\n"
    )
    r = subprocess.run(
        [str(BIN), "storage", "policy"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "arn:aws:s3:::from-dotenv/mask/*" in r.stdout
    assert "provider is local" not in r.stderr
