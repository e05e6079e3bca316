"""The deploy files agree with the code: every setting documented, every process declared."""

import json
from pathlib import Path

import yaml

from crawlhub.config import Settings, env_name

ROOT = Path(__file__).resolve().parents[2]


def test_env_example_documents_every_setting() -> None:
    text = (ROOT / "deploy" / ".env.example").read_text()
    missing = [env_name(f) for f in Settings.model_fields if env_name(f) not in text]
    assert missing == []


def test_readme_configuration_table_names_every_setting() -> None:
    text = (ROOT / "README.md").read_text()
    missing = [
        env_name(f)
        for f in Settings.model_fields
        if env_name(f).replace("CRAWLHUB_SMTP_", "") not in text
    ]
    assert missing == []


def test_procfile_declares_the_four_processes() -> None:
    lines = dict(
        line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line
    )
    assert {k: v.strip() for k, v in lines.items()} == {
        "release": "crawlhub migrate", "web": "crawlhub web",
        "worker": "crawlhub worker", "ticker": "crawlhub ticker",
    }  # fmt: skip


def test_app_json_has_the_addons_formation_and_a_generated_token() -> None:
    manifest = json.loads((ROOT / "app.json").read_text())
    assert {a["plan"] for a in manifest["addons"]} == {"heroku-postgresql", "heroku-redis"}
    assert set(manifest["formation"]) == {"web", "worker", "ticker"}
    assert manifest["env"]["CRAWLHUB_API_TOKENS"]["generator"] == "secret"
    for name, spec in manifest["env"].items():
        assert name.startswith("CRAWLHUB_") and spec["description"]


def test_compose_runs_release_before_the_processes_with_durable_redis() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "release", "web", "worker", "ticker"}
    assert services["release"]["command"] == ["crawlhub", "migrate"]
    for name in ("web", "worker", "ticker"):
        assert services[name]["command"] == ["crawlhub", name]
        condition = services[name]["depends_on"]["release"]["condition"]
        assert condition == "service_completed_successfully"
        assert services[name]["init"] is True
    redis_command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_command and "noeviction" in redis_command


def test_dockerfile_runs_as_a_non_root_user_in_exec_form() -> None:
    lines = (ROOT / "deploy" / "Dockerfile").read_text().splitlines()
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users == ["crawlhub"]
    cmd = next(line for line in lines if line.startswith("CMD "))
    assert json.loads(cmd[4:]) == ["crawlhub", "web"]
    assert any(line.startswith("FROM python:3.11-slim") for line in lines)


def test_every_deployment_starts_the_worker_as_root_with_a_spider_user_to_switch_to() -> None:
    """Spiders get a user of their own only when the worker can switch (Security model)."""
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    assert compose["services"]["worker"]["user"] == "root"
    assert all("user" not in compose["services"][name] for name in ("web", "ticker"))
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "useradd --system --gid crawlhub-spider" in dockerfile
    unit = (ROOT / "deploy" / "systemd" / "crawlhub-worker.service").read_text()
    assert "\nUser=root\n" in unit and "crawlhub-spider" in unit
