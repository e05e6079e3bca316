"""Settings read from the environment and validated once at start-up."""

import os
import re
import secrets
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from crawlhub.errors import ConfigError

# Env vars a PaaS sets without our prefix; everything else is CRAWLHUB_<FIELD>.
_UNPREFIXED = {"database_url": "DATABASE_URL", "redis_url": "REDIS_URL", "port": "PORT"}

MiB = 1024 * 1024
TOKEN_FILE = "api-token"  # noqa: S105 - a file name, not a secret


LABEL = re.compile(r"^[A-Za-z0-9_.-]{1,64}(=[A-Za-z0-9_.-]{1,64})?$")


class Settings(BaseSettings):
    """Every knob of CrawlHub; see docs/guide/configuration.md."""

    model_config = SettingsConfigDict(
        env_prefix="CRAWLHUB_", extra="ignore", frozen=True, populate_by_name=True
    )

    database_url: SecretStr = Field(
        SecretStr("sqlite:///./crawlhub.db"), validation_alias=AliasChoices("DATABASE_URL")
    )
    redis_url: SecretStr | None = Field(None, validation_alias=AliasChoices("REDIS_URL"))
    port: int = Field(8000, ge=1, le=65535, validation_alias=AliasChoices("PORT"))
    host: str | None = None  # web: 0.0.0.0, up: 127.0.0.1
    metrics_port: int | None = Field(None, ge=1, le=65535)  # worker/ticker /metrics
    api_tokens: SecretStr | None = None
    data_dir: Path = Path("./crawlhub-data")
    log_level: str = "INFO"
    worker_concurrency: int = Field(4, ge=1, le=256)
    # What a worker's machine offers, comma-separated: `browser,region=eu` (docs: fleet).
    worker_labels: str = ""
    default_timeout_s: int = Field(3600, ge=1)
    max_upload_bytes: int = Field(50 * MiB, ge=1024)
    max_unpacked_bytes: int = Field(500 * MiB, ge=1024)
    max_archive_files: int = Field(10_000, ge=1)
    max_request_bytes: int = Field(1 * MiB, ge=1024)
    retention_days: int | None = Field(None, ge=1)  # items and log lines (per spider too)
    task_retention_days: int = Field(180, ge=1)  # finished runs, with their items and logs
    alert_retention_days: int = Field(90, ge=1)  # alerts and their deliveries
    audit_retention_days: int = Field(365, ge=1)  # the audit log
    keep_versions: int = Field(20, ge=1)  # newest versions per project that keep their package
    kill_grace_s: float = Field(10.0, ge=0.1, le=600)
    shutdown_grace_s: float = Field(15.0, ge=0, le=3600)  # runs may finish this long on SIGTERM
    heartbeat_s: float = Field(5.0, ge=0.5, le=300)
    alert_fold_s: int = Field(3600, ge=0)  # repeats of an alert within this window fold into it
    dead_letter_ttl_days: int = Field(30, ge=1, le=3650)
    lease_s: float = Field(60.0, ge=5, le=3600)  # a running task silent this long is lost
    # A finished run's thread waits this long for an outage to end, then hands its outcome to
    # the worker's recorder (worker/outcomes.py), which waits as long as it takes.
    record_patience_s: float = Field(600.0, ge=0, le=86400)
    max_log_line_bytes: int = Field(8192, ge=256)
    max_log_lines: int = Field(100_000, ge=100)
    max_item_bytes: int = Field(16 * MiB, ge=1024)
    # Per-field statistics of every run's items, and its data quality verdict (false: none;
    # what the ingest benchmark compares against).
    item_statistics: bool = True
    # Which held run a free slot takes: fair (the project with the fewest runs under way, then
    # priority, then age) or fifo (the oldest).
    dispatch_order: Literal["fair", "fifo"] = "fair"
    # Per run, unless a spider sets its own (sandbox/limits.py): memory it uses (its cgroup),
    # tasks (processes and threads), open files per process, disk and files in its work dir.
    memory_limit_mb: int = Field(2048, ge=64)
    max_processes: int = Field(512, ge=16)
    max_open_files: int = Field(16384, ge=64)
    disk_limit_mb: int = Field(1024, ge=1)
    max_files: int = Field(50_000, ge=100)
    sandbox: Literal["auto", "bwrap", "users", "off"] = "auto"  # sandbox/isolation.py
    # As root, each run slot's processes run as one of these uids (no account needed).
    spider_uids: str = "1900000000-1900000999"
    spider_python: Path | None = None  # interpreter for spiders; default: the worker's own
    sandbox_read_only: str = ""  # more host paths spiders may read, separated by ":"
    sandbox_writable: str = ""  # host paths every spider may write (shared by all runs!)
    warm_start: bool = True  # runs fork from a warm launcher per environment (else start cold)
    launcher_idle_s: float = Field(600.0, ge=1, le=86400)  # a launcher unused this long stops
    # Where project environments' packages come from (builds only; spiders never see these).
    package_index_url: str | None = None  # default: PyPI
    extra_index_url: str | None = None  # space-separated
    trusted_hosts: str | None = None  # space-separated hosts reached without TLS checks
    env_ttl_days: int = Field(14, ge=1, le=3650)  # unused environments are deleted after this
    env_build_timeout_s: int = Field(1800, ge=10)
    channel_allow_hosts: str = ""  # hosts or CIDRs channels may reach despite the SSRF rules
    metrics_token: SecretStr | None = None  # bearer token /metrics asks for, when set
    db_pool_size: int = Field(10, ge=1)
    db_pool_timeout_s: float = Field(30.0, gt=0, le=3600)  # then GiveWay: an outage, retried
    session_hours: float = Field(12.0, gt=0, le=24 * 30)  # dashboard sign-ins last this long
    admin_password: SecretStr | None = None  # `up`'s first admin's, else one is made and shown
    oidc_issuer: str | None = None  # single sign-on: the OpenID Connect provider's issuer URL
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_default_role: Literal["none", "viewer", "operator", "developer", "admin"] = "viewer"
    smtp_host: str | None = None
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "crawlhub@localhost"
    smtp_starttls: bool = True

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value().strip()
        # Heroku-style postgres:// and bare postgresql:// both mean psycopg 3 here.
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                url = "postgresql+psycopg://" + url[len(prefix) :]
        if not url.startswith(("postgresql+psycopg://", "sqlite://")):
            raise ValueError("must be a postgresql:// or sqlite:// URL")
        return SecretStr(url)

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if not value.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        # Resolved once: spiders run in work dirs below it and must get absolute paths.
        return value.expanduser().absolute()

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator("worker_labels")
    @classmethod
    def _check_worker_labels(cls, value: str) -> str:
        labels = [label.strip() for label in value.split(",") if label.strip()]
        for label in labels:
            if not LABEL.match(label):
                raise ValueError(f"{label!r} is not a label: name or name=value, of letters, "
                                 "digits, '.', '_' and '-'")  # fmt: skip
        return ",".join(labels)

    @property
    def labels(self) -> list[str]:
        """This worker's labels."""
        return [label for label in self.worker_labels.split(",") if label]

    @field_validator("spider_uids")
    @classmethod
    def _check_spider_uids(cls, value: str) -> str:
        first, dash, last = value.strip().partition("-")
        if not (dash and first.isdigit() and last.isdigit()):
            raise ValueError("must be a range of uids, first-last (e.g. 1900000000-1900000999)")
        if not 1000 <= int(first) <= int(last) < 2**31 - 1:
            raise ValueError("must lie within 1000-2147483646, first before last")
        return f"{int(first)}-{int(last)}"

    @field_validator("sandbox_read_only", "sandbox_writable")
    @classmethod
    def _check_paths(cls, value: str) -> str:
        for path in filter(None, value.split(":")):
            if not path.startswith("/"):
                raise ValueError(f"{path!r} is not an absolute path")
        return value

    @model_validator(mode="after")
    def _lease_covers_heartbeats(self) -> "Settings":
        if self.lease_s < 3 * self.heartbeat_s:
            raise ValueError("lease_s must be at least three heartbeats (3 x CRAWLHUB_HEARTBEAT_S)")
        return self

    @model_validator(mode="after")
    def _sso_whole(self) -> "Settings":
        given = [self.oidc_issuer, self.oidc_client_id, self.oidc_client_secret]
        if any(given) and not all(given):
            raise ValueError("single sign-on needs CRAWLHUB_OIDC_ISSUER, CRAWLHUB_OIDC_CLIENT_ID "
                             "and CRAWLHUB_OIDC_CLIENT_SECRET together")  # fmt: skip
        if self.oidc_issuer and not self.oidc_issuer.startswith(("https://", "http://")):
            raise ValueError("CRAWLHUB_OIDC_ISSUER must be an http(s) URL")
        return self

    @property
    def sso(self) -> bool:
        """Whether single sign-on (OpenID Connect) is configured."""
        return self.oidc_issuer is not None

    @cached_property
    def tokens(self) -> tuple[str, ...]:
        """The bearer tokens from CRAWLHUB_API_TOKENS, blanks dropped."""
        if self.api_tokens is None:
            return ()
        raw = self.api_tokens.get_secret_value().split(",")
        return tuple(token.strip() for token in raw if token.strip())

    @property
    def spider_uid_range(self) -> range:
        """The uids of run slots (CRAWLHUB_SPIDER_UIDS), for a root worker."""
        first, last = self.spider_uids.split("-")
        return range(int(first), int(last) + 1)

    @property
    def is_sqlite(self) -> bool:
        """Whether the database is the embedded SQLite file."""
        return self.database_url.get_secret_value().startswith("sqlite")


def env_name(field: str) -> str:
    """The environment variable that sets a settings field."""
    return _UNPREFIXED.get(field, "CRAWLHUB_" + field.upper())


def load_settings(**overrides: Any) -> Settings:
    """Read the settings; an invalid value raises ConfigError naming its variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        name = env_name(field) if field in Settings.model_fields else field
        raise ConfigError(f"{name}: {first['msg']}") from exc


def token_path(data_dir: Path) -> Path:
    """Where `crawlhub up` keeps the API token it generated."""
    return data_dir / TOKEN_FILE


def read_token_file(data_dir: Path) -> tuple[str, ...]:
    """The token stored in the data dir, if there is one."""
    try:
        token = token_path(data_dir).read_text().strip()
    except FileNotFoundError:
        return ()
    return (token,) if token else ()


def ensure_token_file(data_dir: Path) -> str | None:
    """Create the data dir's token on first start; returns it only when newly created."""
    path = token_path(data_dir)
    if path.exists():
        return None
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    # O_EXCL: two processes starting at once cannot both think they created it; 0600 from birth.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(token + "\n")
    return token
