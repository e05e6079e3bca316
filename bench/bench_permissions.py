"""Issue 27: permission checks add at most 1 ms to an API call's p50.

A distributed instance (`crawlhub web` and `crawlhub worker` in processes of their own, as
the Procfile runs them, on PostgreSQL and Redis) with two projects of 20 spiders and 40
finished runs each. The same API calls are made, interleaved request by request on one
keep-alive connection each, by:
- a configured token (CRAWLHUB_API_TOKENS): what every call was before users existed,
  no lookup at all: the baseline;
- a developer's personal token (a role on every project: its token and user are looked
  up, its memberships read, its role checked, nothing narrowed);
- a personal token of a member of one project only (role `none`, operator on `alpha`):
  looked up the same way, and every query narrowed to its project.

Calls: a spider by name (`GET /api/spiders/{ref}`), the newest runs (`GET /api/tasks`), a
run (`GET /api/tasks/{id}`). The figure is each caller's p50 minus the baseline's p50, per
call.

    .venv/bin/python bench/bench_permissions.py [--rounds 1500]
"""

from __future__ import annotations

import argparse
import uuid

import httpx
from common import TOKEN, Hub, Row, median, report

TARGET_MS = 1.0


def seed(hub: Hub) -> dict[str, str]:
    """Two projects with spiders and finished runs; the callers' tokens by name."""
    from crawlhub.repo.models import Task
    from crawlhub.services import accounts

    for project in ("alpha", "beta"):
        made = hub.http.post("/api/projects", json={"name": project, "kind": "python"})
        made.raise_for_status()
        for n in range(20):
            spider = hub.http.post(
                "/api/spiders", json={"name": f"{project}-{n:02d}", "project": project}
            )
            spider.raise_for_status()
            with hub.ctx.db.session() as session:
                session.add_all(
                    Task(spider_id=uuid.UUID(spider.json()["id"]), trigger="manual",
                         status="completed", params={}) for _ in range(2)
                )  # fmt: skip
    dev = accounts.create_user(hub.ctx, "dev", "a long password", "developer")
    _, dev_token = accounts.create_token(hub.ctx, dev.id, "bench", ["deploy"], None)
    member = accounts.create_user(hub.ctx, "member", "a long password", "none")
    accounts.set_member(hub.ctx, "alpha", "member", "operator")
    _, member_token = accounts.create_token(hub.ctx, member.id, "bench", ["run"], None)
    return {"configured token": TOKEN, "developer token": dev_token,
            "member of one project": member_token}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1500)
    args = parser.parse_args()
    with Hub(processes=True) as hub:
        tokens = seed(hub)
        task = hub.http.get("/api/tasks", params={"spider_id": "alpha-03"}).json()["items"][0]
        calls = {
            "GET /api/spiders/{ref}": "/api/spiders/alpha-03",
            "GET /api/tasks": "/api/tasks",
            "GET /api/tasks/{id}": f"/api/tasks/{task['id']}",
        }
        clients = {
            name: httpx.Client(
                base_url=hub.base_url, timeout=30, headers={"Authorization": f"Bearer {token}"}
            )
            for name, token in tokens.items()
        }
        times: dict[tuple[str, str], list[float]] = {}
        try:
            for round_ in range(args.rounds + 50):  # the first 50 rounds warm up
                for call, path in calls.items():
                    for name, client in clients.items():
                        answer = client.get(path)
                        if answer.status_code != 200:
                            raise RuntimeError(f"{name} {path}: {answer.status_code}")
                        if round_ >= 50:
                            elapsed = answer.elapsed.total_seconds() * 1000
                            times.setdefault((call, name), []).append(elapsed)
        finally:
            for client in clients.values():
                client.close()
    rows = []
    for call in calls:
        base = median(times[(call, "configured token")])
        for name in tokens:
            p50 = median(times[(call, name)])
            if name == "configured token":
                rows.append(Row(f"{call}, p50, {name}", f"{p50:.2f} ms", "", "", "", None))
                continue
            added = p50 - base
            rows.append(Row(f"{call}, p50, {name}", f"{p50:.2f} ms (+{added:.2f} ms)",
                            f"{base:.2f} ms", f"{p50 / base:.2f}x", f"+{TARGET_MS:.0f} ms",
                            added <= TARGET_MS))  # fmt: skip
    report("Permission checks: an API call's p50 by caller", rows,
           [f"{args.rounds} rounds, each call by each caller in turn, one keep-alive "
            "connection per caller; web and worker processes on PostgreSQL"])  # fmt: skip


if __name__ == "__main__":
    main()
