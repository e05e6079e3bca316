"""Settings: defaults, PaaS-style URLs, one-line errors naming the variable, hidden secrets."""

from pathlib import Path

import pytest

from crawlhub.config import load_settings
from crawlhub.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "REDIS_URL", "PORT", "CRAWLHUB_API_TOKENS", "CRAWLHUB_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_are_the_embedded_ones() -> None:
    settings = load_settings()
    assert settings.database_url.get_secret_value() == "sqlite:///./crawlhub.db"
    assert settings.redis_url is None
    assert settings.port == 8000
    assert settings.data_dir == Path.cwd() / "crawlhub-data"  # absolute: spiders run elsewhere
    assert settings.tokens == ()


def test_heroku_postgres_url_is_read_as_psycopg3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db.example:5432/app")
    url = load_settings().database_url.get_secret_value()
    assert url == "postgresql+psycopg://u:p@db.example:5432/app"


def test_tokens_are_split_on_commas_and_blanks_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRAWLHUB_API_TOKENS", " alpha, beta ,,")
    assert load_settings().tokens == ("alpha", "beta")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PORT", "eighty"),
        ("PORT", "70000"),
        ("DATABASE_URL", "mysql://u@h/db"),
        ("REDIS_URL", "http://localhost:6379"),
        ("CRAWLHUB_WORKER_CONCURRENCY", "0"),
        ("CRAWLHUB_LOG_LEVEL", "LOUD"),
        ("CRAWLHUB_MAX_UPLOAD_BYTES", "ten"),
    ],
)
def test_invalid_value_names_its_variable_in_one_line(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(f"{variable}: ")
    assert "\n" not in message


def test_repr_of_settings_shows_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:db-pass-123@db/app")
    monkeypatch.setenv("REDIS_URL", "redis://:redis-pass-456@cache:6379/0")
    monkeypatch.setenv("CRAWLHUB_API_TOKENS", "token-abc-789")
    monkeypatch.setenv("CRAWLHUB_SMTP_PASSWORD", "smtp-pass-000")
    settings = load_settings()
    shown = repr(settings) + str(settings) + str(settings.model_dump())
    for secret in ("db-pass-123", "redis-pass-456", "token-abc-789", "smtp-pass-000"):
        assert secret not in shown
    assert settings.tokens == ("token-abc-789",)


def test_request_logs_of_httpx_are_off_in_every_process() -> None:
    """Channel URLs can be credentials: httpx's INFO line per request must never appear."""
    import logging

    from crawlhub.cli.logging_setup import setup_logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        setup_logging("DEBUG")
        assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
        assert logging.getLogger("httpcore").getEffectiveLevel() == logging.WARNING
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
