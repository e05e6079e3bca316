"""Every client command of `crawlhub` against a real instance (served over HTTP, with workers),
as a user types it; `--json` output parsed back."""

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TOKEN
from tests.integration.harness import Hub, Site, served
from tests.integration.test_activity import add_spider, add_task

FIXTURES = Path(__file__).parent.parent / "fixtures" / "spiders"
SLOW = "import time\ndef run(p):\n    time.sleep(60)\n"


@pytest.fixture
def url(pg_hub: Hub) -> Iterator[str]:
    with served(pg_hub) as base:
        yield base


@pytest.fixture
def site() -> Iterator[Site]:
    served_site = Site(pages=3)
    yield served_site
    served_site.close()


class Cli:
    def __init__(self, url: str, home: Path) -> None:
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
                    "XDG_CONFIG_HOME": str(home / "config"), "CRAWLHUB_URL": url,
                    "CRAWLHUB_TOKEN": TOKEN, "COLUMNS": "200"}  # fmt: skip
        self.cwd = home

    def __call__(self, *args: str, code: int = 0, **env: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "crawlhub", *args], cwd=self.cwd,
                              env={**self.env, **env}, capture_output=True, text=True,
                              timeout=120, check=False)  # fmt: skip
        assert done.returncode == code, (args, done.returncode, done.stdout, done.stderr)
        return done

    def json(self, *args: str, **env: str) -> Any:
        return json.loads(self(*args, "--json", **env).stdout)


@pytest.fixture
def cli(url: str, tmp_path: Path) -> Cli:
    home = tmp_path / "home"
    home.mkdir()
    return Cli(url, home)


def test_projects_spiders_and_deploy(cli: Cli, pg_hub: Hub) -> None:
    deployed = cli("deploy", str(FIXTURES / "news_scrapy"), "--project", "news")
    assert "spiders: alpha, beta, gamma" in deployed.stdout
    [project] = cli.json("projects", "list")["items"]
    assert (project["name"], project["spiders"]) == ("news", ["alpha", "beta", "gamma"])
    assert "news" in cli("projects", "list").stdout
    shown = cli.json("projects", "show", "news")
    assert shown["versions"][0]["environment"]["status"] == "ready"
    assert cli("projects", "log", "news").stdout.strip() == "scrapy list: alpha, beta, gamma"

    listed = cli.json("spiders", "list", "--project", "news")
    assert sorted(s["name"] for s in listed["items"]) == ["alpha", "beta", "gamma"]
    table = cli("spiders", "list").stdout
    assert all(name in table for name in ("alpha", "beta", "gamma"))
    changed = cli.json("spiders", "set", "beta", "--timeout", "90", "--retries", "1",
                       "-p", "start_url=http://x/", "-e", "TOKEN_OF=beta")  # fmt: skip
    assert (changed["timeout_s"], changed["max_retries"]) == (90, 1)
    assert (changed["params"], changed["env"]) == ({"start_url": "http://x/"},
                                                   {"TOKEN_OF": "********"})  # fmt: skip
    assert cli.json("spiders", "show", "beta")["timeout_s"] == 90
    limited = cli.json("spiders", "set", "beta", "-l", "memory_mb=4096", "-l", "files=500")
    assert limited["limits"] == {"memory_mb": 4096, "files": 500}
    refused = cli("spiders", "set", "beta", "-l", "memory=1", code=1)
    assert "unknown limit 'memory'" in refused.stderr
    assert cli.json("spiders", "set", "beta", "-l", "default")["limits"] == {}
    cli("spiders", "disable", "beta")
    assert cli.json("spiders", "list", "--disabled")["items"][0]["name"] == "beta"
    refused = cli("run", "beta", code=1)
    assert "crawlhub: spider 'beta' is disabled" in refused.stderr
    cli("spiders", "enable", "beta")
    # The API's details are printed with its message.
    bad = cli("spiders", "set", "beta", "--timeout", "0", code=1)
    assert "timeout_s" in bad.stderr and "greater than or equal to 1" in bad.stderr
    cli("spiders", "rm", "gamma", "--yes")
    assert cli("spiders", "show", "gamma", code=1).stderr.startswith("crawlhub: spider 'gamma'")
    assert cli.json("projects", "set", "news", "--name", "daily")["name"] == "daily"
    assert cli.json("spiders", "show", "alpha")["project"] == "daily"
    cli("projects", "rm", "daily", "--yes")
    assert cli.json("projects", "list")["items"] == []


def test_run_follow_logs_cancel_and_runs(cli: Cli, pg_hub: Hub, site: Site) -> None:
    cli("deploy", str(FIXTURES / "news_scrapy"), "--project", "news")
    followed = cli("run", "alpha", "-p", f"start_url={site.url}", "-s", "CONCURRENT_REQUESTS=1",
                   "--follow")  # fmt: skip
    assert "Spider closed (finished)" in followed.stdout  # the spider's log, on stdout
    assert f"completed: {site.pages} items" in followed.stderr
    run_id = followed.stderr.split()[1]
    task = pg_hub.task(run_id)
    assert task["settings"] == {"CONCURRENT_REQUESTS": 1}
    everything = cli("logs", run_id).stdout
    assert "[crawlhub] attempt 1" in everything and "Spider closed" in everything
    system = cli("logs", run_id, "--stream", "system").stdout.splitlines()
    assert system and all(line.startswith("[crawlhub] ") for line in system)
    assert "[crawlhub]" in cli("logs", run_id, "--follow").stdout  # an ended run: at once

    pg_hub.deploy("slow", {"main.py": SLOW}, max_retries=0)
    started = cli.json("run", "slow")
    pg_hub.wait(started["id"], {"running"})
    cancelled = cli.json("cancel", started["id"])
    assert cancelled["status"] == "cancelled"
    assert pg_hub.wait(started["id"], timeout=10)["reason"] == "user"
    assert "already cancelled" in cli("cancel", started["id"], code=1).stderr

    runs = cli.json("runs", "--spider", "slow")
    assert [r["id"] for r in runs["items"]] == [started["id"]]
    assert cli.json("runs", "--status", "completed")["items"][0]["id"] == run_id
    table = cli("runs").stdout
    assert run_id in table and "alpha" in table and "slow" in table
    assert "is not one of" in cli("runs", "--status", "nope", code=2).stderr


def test_schedules_data_alerts_channels_queues(cli: Cli, pg_hub: Hub, site: Site) -> None:
    pg_hub.deploy("hello", {"main.py": "def run(p):\n    return [{'n': i} for i in range(3)]\n"})
    made = cli.json("schedules", "add", "hello", "30 2 * * *", "--tz", "Asia/Tokyo",
                    "-p", "count=3")  # fmt: skip
    assert (made["cron"], made["timezone"], made["params"]) == ("30 2 * * *", "Asia/Tokyo",
                                                                {"count": 3})  # fmt: skip
    listed = cli.json("schedules", "list")
    assert [s["id"] for s in listed["items"]] == [made["id"]]
    fires = cli.json("schedules", "preview", made["id"], "-n", "3")["items"]
    assert len(fires) == 3 and all(f["local"].endswith("02:30:00+09:00") for f in fires)
    cli("schedules", "pause", made["id"])
    assert cli.json("schedules", "list", "hello")["items"][0]["enabled"] is False
    cli("schedules", "resume", made["id"])
    bad = cli("schedules", "add", "hello", "61 * * * *", code=1)
    assert "crawlhub:" in bad.stderr and "61" in bad.stderr
    cli("schedules", "rm", made["id"])
    assert cli.json("schedules", "list")["items"] == []

    task = pg_hub.wait(cli.json("run", "hello")["id"])
    lines = cli("data", "query", "--spider", "hello").stdout.splitlines()
    assert [json.loads(x) for x in lines] == [{"n": 0}, {"n": 1}, {"n": 2}]
    page = cli.json("data", "query", "--run", task["id"], "-n", "2")
    assert [i["data"]["n"] for i in page["items"]] == [0, 1] and page["total"] == 3
    target = cli.cwd / "hello.csv"
    exported = cli("data", "export", "hello", "--format", "csv", "-o", str(target))
    assert "wrote 3 items" in exported.stderr
    assert target.read_text().splitlines() == ["n", "0", "1", "2"]

    pg_hub.deploy("broken", {"main.py": "def run(p):\n    raise ValueError('bad page')\n"},
               max_retries=0)  # fmt: skip
    failed = cli("run", "broken", "--follow", code=1)
    assert "ValueError: bad page" in failed.stdout
    alerts = cli.json("alerts", "list", "--unread")["items"]
    assert alerts and "broken" in alerts[0]["message"]
    assert alerts[0]["message"].endswith("(exit code 1): ValueError: bad page"), alerts[0]
    cli("alerts", "read", alerts[0]["id"])
    assert cli.json("alerts", "list", "--unread")["items"] == []
    assert "give one ALERT or --all" in cli("alerts", "read", code=2).stderr
    cli("alerts", "read", "--all")

    channel = cli.json("channels", "add", "email", "ops@example.com", "--min-level", "error")
    assert cli.json("channels", "list")["items"][0]["id"] == channel["id"]
    tested = cli("channels", "test", channel["id"], code=1)  # no SMTP host here
    assert "smtp" in (tested.stdout + tested.stderr).lower()
    cli("channels", "rm", channel["id"])
    assert cli.json("channels", "list")["items"] == []
    refused = cli("channels", "add", "webhook", "http://127.0.0.1/hook", code=1)
    assert "crawlhub:" in refused.stderr

    queues = cli.json("queues")
    assert {q["name"] for q in queues["queues"]} >= {"crawlhub.runs", "crawlhub.builds"}
    assert "crawlhub.runs" in cli("queues").stdout
    dead = cli.json("queues", "dead-letters")
    assert dead["total"] == 1 and dead["items"][0]["dead_at"]
    assert "purged 1" in cli("queues", "purge").stderr


def test_login_stores_the_server_for_this_user_and_commands_work_anywhere(
    cli: Cli, url: str, tmp_path: Path
) -> None:
    env = {"CRAWLHUB_URL": "", "CRAWLHUB_TOKEN": ""}
    refused = cli("login", url, "--token", "wrong", code=1, **env)
    assert "not signed in" in refused.stderr
    cli("login", url, "--token", TOKEN, **env)
    stored = Path(cli.env["XDG_CONFIG_HOME"]) / "crawlhub" / "config.json"
    assert oct(stored.stat().st_mode & 0o777) == "0o600"
    assert json.loads(stored.read_text()) == {"url": url, "token": TOKEN}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cli.cwd = elsewhere
    assert cli.json("spiders", "list", **env)["items"] == []
    helped = cli("--help", **env).stdout
    assert "CRAWLHUB_URL" in helped and "CRAWLHUB_TOKEN" in helped and "Exit status" in helped
    unreachable = cli("runs", code=3, CRAWLHUB_URL="http://127.0.0.1:9")
    assert "cannot reach http://127.0.0.1:9" in unreachable.stderr


def test_short_ids_paging_lines_and_export_forms(cli: Cli, pg_hub: Hub) -> None:
    """What a person types after reading the dashboard: its 8-character ids; the paging
    line says how to read on and when nothing follows; exports of everything and of one
    run, with text as it was scraped."""
    pg_hub.deploy("shop", {"main.py": "def run(p):\n    return [{'n': i, 'price': '£3' + str(i)}"
                                      " for i in range(8)]\n"})  # fmt: skip
    task = pg_hub.wait(cli.json("run", "shop")["id"])
    short = task["id"][:8]
    assert "[crawlhub] completed after" in cli("logs", short).stdout
    assert cli.json("runs", "--spider", "shop")["items"][0]["id"] == task["id"]
    first = cli("data", "query", "--run", short, "-n", "5")
    assert [json.loads(x)["n"] for x in first.stdout.splitlines()] == [0, 1, 2, 3, 4]
    assert '"price": "£30"' in first.stdout
    after = cli.json("data", "query", "--run", short, "-n", "5")["next_after_id"]
    assert first.stderr.strip() == f"5 of 8 items; next: --after-id {after}"
    rest = cli("data", "query", "--run", short, "-n", "10", "--after-id", str(after))
    assert [json.loads(x)["n"] for x in rest.stdout.splitlines()] == [5, 6, 7]
    assert rest.stderr.strip() == "3 items; the last"
    past = cli("data", "query", "--run", short, "--after-id", str(after + 100))
    assert past.stdout == "" and past.stderr.strip() == "no items"
    whole = cli("data", "query", "--spider", "shop", "-n", "10")
    assert whole.stderr.strip() == "8 of 8 items; the last"

    everything = cli("data", "export", "--format", "jsonl", "-o", "all.jsonl")
    assert "wrote 8 items" in everything.stderr
    lines = (cli.cwd / "all.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(x)["n"] for x in lines] == list(range(8))
    assert '"£30"' in lines[0]  # as scraped, not \u00a3
    one_run = cli("data", "export", "--run", short, "--format", "csv", "-o", "run.csv")
    assert "wrote 8 items" in one_run.stderr
    assert (cli.cwd / "run.csv").read_text(encoding="utf-8").splitlines()[1] == "0,£30"

    made = cli("schedules", "add", "shop", "30 6 * * 1-5", "--tz", "Europe/Paris")
    said = made.stderr.strip()
    assert said.count("UTC") == 1 and "Europe/Paris (" in said, said
    assert re.search(r"next fire \d{4}-\d\d-\d\d 06:30 Europe/Paris \(0\d:30 UTC\)$", said), said


def test_ambiguous_short_ids_list_their_matches_and_a_missing_token_says_how_to_sign_in(
    cli: Cli, pg_hub: Hub, url: str, tmp_path: Path
) -> None:
    spider = add_spider(pg_hub.context, "twins")
    for twin in ("77aa1111-aaaa-4aaa-8aaa-000000000001", "77aa2222-aaaa-4aaa-8aaa-000000000002"):
        add_task(pg_hub.context, spider, "completed", datetime.now(UTC), id=uuid.UUID(twin))
    ambiguous = cli("logs", "77aa", code=1)
    assert "ambiguous" in ambiguous.stderr
    assert "77aa1111-aaaa-4aaa-8aaa-000000000001" in ambiguous.stderr
    assert "77aa2222-aaaa-4aaa-8aaa-000000000002" in ambiguous.stderr
    assert "[crawlhub]" not in cli("logs", "77aa2").stdout  # one match: its (empty) log
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cli.cwd = elsewhere
    refused = cli("runs", code=1, CRAWLHUB_TOKEN="")
    assert f"crawlhub login {url}" in refused.stderr, refused.stderr
    wrong = cli("runs", code=1, CRAWLHUB_TOKEN="not-a-token")
    assert "refused the token" in wrong.stderr and "crawlhub login" in wrong.stderr


def test_deploy_with_a_project_and_a_name_puts_the_spider_in_that_project(cli: Cli) -> None:
    deployed = cli("deploy", str(FIXTURES / "news_scrapy"), "--project", "pwpy", "--name",
                   "pw_news", "--entry", "alpha")  # fmt: skip
    assert "in project pwpy" in deployed.stdout, deployed.stdout
    assert cli.json("spiders", "show", "pw_news")["project"] == "pwpy"
    assert cli("projects", "log", "pwpy").returncode == 0
    elsewhere = cli("deploy", str(FIXTURES / "news_scrapy"), "--project", "other", "--name",
                    "pw_news", "--entry", "alpha", code=1)  # fmt: skip
    assert "spider pw_news is in project pwpy, not other" in elsewhere.stderr


def test_a_scrapyd_job_id_of_any_characters_is_a_run_id_on_the_command_line(
    cli: Cli, pg_hub: Hub
) -> None:
    pg_hub.deploy("shop", {"main.py": "def run(p):\n    return [{'n': 1}, {'n': 2}]\n"})
    job = "nightly run #3?a=b&c=d <x> " + "j" * 90  # 117 characters, none of them `/`
    scheduled = pg_hub.client.post("/scrapyd/schedule.json", data={
        "project": "shop", "spider": "shop", "jobid": job})  # fmt: skip
    assert scheduled.json()["jobid"] == job, scheduled.text
    assert pg_hub.wait(job)["status"] == "completed"
    assert "[crawlhub] completed after" in cli("logs", job).stdout
    assert [json.loads(x)["n"] for x in cli("data", "query", "--run", job).stdout.splitlines()] == [
        1, 2]  # fmt: skip
    refused = cli("cancel", job, code=1)
    assert "completed" in refused.stderr, refused.stderr


def test_login_with_a_user_name_stores_a_personal_token_and_users_are_managed_on_the_server(
    cli: Cli, url: str, pg_hub: Hub
) -> None:
    settings = pg_hub.context.settings
    server = {"CRAWLHUB_DATABASE_URL": settings.database_url.get_secret_value(),
              "CRAWLHUB_DATA_DIR": str(settings.data_dir)}  # fmt: skip
    added = subprocess.run([sys.executable, "-m", "crawlhub", "users", "add", "dana", "--role",
                            "developer", "--password-stdin"], input="a long password\n",
                           env={**cli.env, **server}, capture_output=True, text=True,
                           timeout=120, check=False)  # fmt: skip
    assert added.returncode == 0 and "user dana added (developer)" in added.stderr, added.stderr
    env = {"CRAWLHUB_URL": "", "CRAWLHUB_TOKEN": ""}
    done = subprocess.run([sys.executable, "-m", "crawlhub", "login", url, "--username", "dana"],
                          input="a long password\n", env={**cli.env, **env}, cwd=cli.cwd,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    stored = json.loads((Path(cli.env["XDG_CONFIG_HOME"]) / "crawlhub" / "config.json")
                        .read_text())  # fmt: skip
    assert stored["url"] == url and stored["token"].startswith("chp_")
    pg_hub.deploy("shop", {"main.py": "def run(p):\n    return [{'n': 1}]\n"})
    run = cli.json("run", "shop", **env)
    assert pg_hub.wait(run["id"])["actor"] == "cli (dana)"
    assert "manual by cli (dana)" in cli("runs", **env).stdout
    wrong = subprocess.run([sys.executable, "-m", "crawlhub", "login", url, "--username", "dana"],
                           input="not the password\n", env={**cli.env, **env}, cwd=cli.cwd,
                           capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert wrong.returncode == 1 and "wrong user name or password" in wrong.stderr
