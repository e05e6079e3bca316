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


def test_the_configuration_page_names_every_setting() -> None:
    text = (ROOT / "docs" / "guide" / "configuration.md").read_text()
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
        assert services[name]["init"] is (name != "worker")  # the worker divides its cgroup
    redis_command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_command and "noeviction" in redis_command


def test_dockerfile_runs_as_a_non_root_user_in_exec_form() -> None:
    lines = (ROOT / "deploy" / "Dockerfile").read_text().splitlines()
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users == ["crawlhub"]
    cmd = next(line for line in lines if line.startswith("CMD "))
    assert json.loads(cmd[4:]) == ["crawlhub", "web"]
    assert any(line.startswith("FROM python:3.11-slim") for line in lines)


def test_every_deployment_starts_the_worker_as_root_with_what_the_sandbox_needs() -> None:
    """Spiders get users of their own and bubblewrap's namespaces only from a root worker
    that may make them (docs/guide/security.md)."""
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    worker = compose["services"]["worker"]
    assert worker["user"] == "root" and set(worker["cap_add"]) == {"SYS_ADMIN", "NET_ADMIN"}
    assert set(worker["security_opt"]) == {"apparmor=unconfined", "systempaths=unconfined"}
    assert worker["cgroup"] == "private"
    assert all("user" not in compose["services"][name] for name in ("web", "ticker"))
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "bubblewrap nftables" in dockerfile
    unit = (ROOT / "deploy" / "systemd" / "crawlhub-worker.service").read_text()
    assert "\nUser=root\n" in unit and "\nDelegate=yes\n" in unit


def test_compose_writes_no_password_and_requires_generated_ones() -> None:
    """PostgreSQL and Redis take passwords deploy/init-env generates into deploy/.env (not
    committed); the compose file holds none, and Redis refuses clients without one."""
    text = (ROOT / "deploy" / "docker-compose.yml").read_text()
    compose = yaml.safe_load(text)
    postgres, redis = compose["services"]["postgres"], compose["services"]["redis"]
    assert postgres["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert "--requirepass" in redis["command"]
    assert redis["command"][redis["command"].index("--requirepass") + 1].startswith(
        "${REDIS_PASSWORD:?")  # fmt: skip
    for name in ("web", "worker", "ticker", "release"):
        env = compose["services"][name]["environment"]
        assert "${POSTGRES_PASSWORD:?" in env["DATABASE_URL"], name
        assert env["REDIS_URL"].startswith("redis://:${REDIS_PASSWORD:?"), name
    assert ":crawlhub@" not in text and "POSTGRES_PASSWORD: crawlhub" not in text
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_init_env_generates_every_secret_once_and_keeps_them_private(tmp_path: Path) -> None:
    import shutil
    import stat
    import subprocess

    deploy = tmp_path / "deploy"
    deploy.mkdir()
    shutil.copy(ROOT / "deploy" / "init-env", deploy / "init-env")
    subprocess.run([str(deploy / "init-env")], check=True, capture_output=True)
    written = (deploy / ".env").read_text()
    values = dict(line.split("=", 1) for line in written.splitlines() if "=" in line)
    assert set(values) == {"CRAWLHUB_API_TOKENS", "POSTGRES_PASSWORD", "REDIS_PASSWORD"}
    assert len(set(values.values())) == 3 and all(len(v) == 48 for v in values.values())
    assert stat.S_IMODE((deploy / ".env").stat().st_mode) == 0o600
    subprocess.run([str(deploy / "init-env")], check=True, capture_output=True)
    assert (deploy / ".env").read_text() == written  # never overwritten
