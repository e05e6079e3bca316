"""The fleet with real processes: three `crawlhub worker`s with different labels register as
nodes with their machine; a spider pinned to a label runs only on the node that has it, a run
no node can take says so; a drained node takes no new runs, the others take them; resumed,
it takes runs again; a killed node shows as lost. The API, the CLI and the audit log
agree."""

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import TOKEN
from tests.integration.test_processes import FIXTURES, Process, base_env, crawlhub, free_port

HEARTBEAT_S = 0.5


def eventually(check: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not after {timeout} s"
        time.sleep(0.2)


def fleet(tmp_path: Path, postgres_url: str, redis_url: str,
          **extra: str) -> tuple[dict[str, str], str, httpx.Client]:  # fmt: skip
    """The environment of a distributed instance's processes (migrated), its address and an
    API client."""
    port = free_port()
    env = base_env(tmp_path, PORT=str(port), REDIS_URL=redis_url, CRAWLHUB_API_TOKENS=TOKEN,
                   DATABASE_URL=postgres_url.replace("postgresql+psycopg://", "postgres://"),
                   CRAWLHUB_HEARTBEAT_S=str(HEARTBEAT_S), CRAWLHUB_WORKER_CONCURRENCY="2",
                   **extra)  # fmt: skip
    assert crawlhub("migrate", env=env, cwd=tmp_path).returncode == 0
    base = f"http://127.0.0.1:{port}"
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    return env, base, api


def test_nodes_register_with_labels_drain_resume_and_get_lost(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    env, base, api = fleet(tmp_path, postgres_url, redis_url, CRAWLHUB_LEASE_S="5")
    web = Process(["web"], env, tmp_path)
    labels = ["browser", "region=eu", "browser,region=us"]
    workers = [Process(["worker"], {**env, "CRAWLHUB_WORKER_LABELS": given}, tmp_path)
               for given in labels]  # fmt: skip
    cli = {**env, "CRAWLHUB_URL": base, "CRAWLHUB_TOKEN": TOKEN}
    try:
        web.wait_for(f"{base}/readyz")
        for worker in workers:
            worker.wait_output("worker ready")

        def nodes() -> dict[int, dict[str, Any]]:
            return {n["pid"]: n for n in api.get("/api/nodes").json()["items"]}

        found = eventually(lambda: len(nodes()) == 3 and nodes(), "three nodes")
        for worker, given in zip(workers, labels, strict=True):
            node = found[worker.proc.pid]
            assert node["labels"] == given.split(",") and node["state"] == "online", node
            assert node["slots"] == 2 and node["machine"]["cpus"] >= 1
            assert node["machine"]["memory_mb"] > node["machine"]["memory_free_mb"] > 0
            assert node["machine"]["disk_free_mb"] > 0 and "environments" in node["machine"]
        listed = crawlhub("nodes", env=cli, cwd=tmp_path)
        assert listed.returncode == 0 and "region=eu" in listed.stdout, listed.stderr

        deployed = crawlhub("deploy", str(FIXTURES / "hello.py"), "--name", "hello", env=cli,
                            cwd=tmp_path)  # fmt: skip
        assert deployed.returncode == 0, deployed.stderr
        # Placement: a spider pinned to region=us runs on the one node that has it; a run
        # needing a label no node has says so and waits; a run's own labels.
        pinned = api.patch("/api/spiders/hello", json={"requires": ["region=us"]})
        assert pinned.status_code == 200 and pinned.json()["requires"] == ["region=us"]
        placed = [api.post("/api/spiders/hello/run", json={}).json()["id"] for _ in range(4)]
        gpu = crawlhub("run", "hello", "--label", "gpu", env=cli, cwd=tmp_path)
        assert gpu.returncode == 0 and "no node has labels gpu" in gpu.stderr
        gpu_id = gpu.stdout.strip()
        ran = [eventually(lambda t=t: (found := api.get(f"/api/tasks/{t}").json())["status"]
                          == "completed" and found, "a placed run", 60) for t in placed]  # fmt: skip
        assert {int(t["worker"].split(":")[1]) for t in ran} == {workers[2].proc.pid}
        waiting = api.get(f"/api/tasks/{gpu_id}").json()
        assert waiting["status"] == "pending" and waiting["requires"] == ["gpu"]
        assert waiting["waiting_reason"] == "no node has labels gpu"
        assert api.post(f"/api/tasks/{gpu_id}/cancel").status_code == 200
        assert api.patch("/api/spiders/hello", json={"requires": None}).json()["requires"] is None

        drained, others = workers[0], workers[1:]
        node_id = found[drained.proc.pid]["id"]
        done = crawlhub("nodes", "drain", node_id, env=cli, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert nodes()[drained.proc.pid]["state"] == "draining"
        time.sleep(3 * HEARTBEAT_S)  # the node reads it with its next heartbeat
        started = [api.post("/api/spiders/hello/run", json={}).json()["id"] for _ in range(8)]

        def ended() -> list[dict[str, Any]] | None:
            tasks = [api.get(f"/api/tasks/{t}").json() for t in started]
            return tasks if all(t["status"] == "completed" for t in tasks) else None

        tasks = eventually(ended, "eight runs completed", timeout=60)
        ran_on = {int(t["worker"].split(":")[1]) for t in tasks}
        assert drained.proc.pid not in ran_on and ran_on <= {w.proc.pid for w in others}

        assert crawlhub("nodes", "resume", node_id, env=cli, cwd=tmp_path).returncode == 0
        assert nodes()[drained.proc.pid]["state"] == "online"
        audit = api.get("/api/audit", params={"resource": f"node:{node_id}"}).json()["items"]
        assert [e["action"] for e in audit] == ["node.resume", "node.drain"]

        others[0].proc.kill()
        others[0].proc.wait()
        eventually(lambda: nodes()[others[0].proc.pid]["state"] == "lost", "a lost node")
        assert others[1].stop() == 0
        eventually(lambda: nodes()[others[1].proc.pid]["state"] == "stopped", "a stopped node")
        refused = api.post("/api/nodes/nowhere:1/drain")
        assert refused.status_code == 404
    finally:
        api.close()
        for proc in (web, *workers):
            if proc.proc.poll() is None:
                proc.stop()


NAP = b"import time\n\n\ndef run(params):\n    time.sleep(float(params.get('sleep', 0)))\n    yield {'slept': params.get('sleep', 0)}\n"


def most_at_once(tasks: list[dict[str, Any]]) -> int:
    """The most of these runs that ran at the same time (by their start and end)."""
    edges = sorted(
        [(t["started_at"], 1) for t in tasks] + [(t["finished_at"], -1) for t in tasks],
        key=lambda edge: (edge[0], edge[1]),
    )  # an end before a start at one instant
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def test_limits_hold_with_200_queued_runs_and_slots_are_shared_fairly(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    env, base, api = fleet(tmp_path, postgres_url, redis_url)
    web = Process(["web"], env, tmp_path)
    workers = [Process(["worker"], {**env, "CRAWLHUB_WORKER_LABELS": f"n{i}"}, tmp_path)
               for i in range(3)]  # fmt: skip
    cli = {**env, "CRAWLHUB_URL": base, "CRAWLHUB_TOKEN": TOKEN}
    nap = tmp_path / "nap.py"
    nap.write_bytes(NAP)
    try:
        web.wait_for(f"{base}/readyz")
        for worker in workers:
            worker.wait_output("worker ready")
        eventually(lambda: sum(n["state"] == "online" for n in api.get("/api/nodes").json()[
            "items"]) == 3, "three nodes")  # fmt: skip
        for name in ("bulk", "daily"):
            deployed = crawlhub("deploy", str(nap), "--name", name, env=cli, cwd=tmp_path)
            assert deployed.returncode == 0, deployed.stderr
        limited = crawlhub("spiders", "set", "bulk", "--max-concurrent-runs", "2", env=cli,
                           cwd=tmp_path)  # fmt: skip
        assert limited.returncode == 0, limited.stderr

        # 200 runs of a spider limited to 2, on three nodes of two slots: never more than two
        # at once, every one completes, the waiting ones say why.
        with ThreadPoolExecutor(4) as pool:  # queued faster than two slots run them
            list(pool.map(lambda _: api.post("/api/spiders/bulk/run",
                                             json={"params": {"sleep": 0.1}}), range(200)))  # fmt: skip

        def told_why() -> bool:
            # A run that just ended frees its place until the dispatcher's round after it sends
            # the next (milliseconds): a list read in between rightly finds no reason to wait.
            pending = api.get("/api/tasks", params={"spider_id": "bulk", "status": "pending"})
            held = [t for t in pending.json()["items"] if t["message_id"] is None]
            return bool(held) and {t["waiting_reason"] for t in held} == {"spider limit 2"}

        eventually(told_why, "the held runs told 'spider limit 2'", timeout=10)
        seen = 0

        def all_done() -> list[dict[str, Any]] | None:
            nonlocal seen
            running = api.get("/api/tasks", params={"spider_id": "bulk", "status": "running"})
            seen = max(seen, running.json()["total"])
            assert seen <= 2
            query = {"spider_id": "bulk", "status": "completed", "page_size": 100}
            if api.get("/api/tasks", params=query).json()["total"] < 200:
                return None
            return [t for n in (1, 2)
                    for t in api.get("/api/tasks", params={**query, "page": n}).json()["items"]]  # fmt: skip

        tasks = eventually(all_done, "200 runs completed", timeout=240)
        assert most_at_once(tasks) == 2 and seen >= 1
        assert len({t["node_id"] for t in tasks}) == 3  # every node took some

        # Fair share: bulk (no limit now) queues 120 runs over the six slots; daily's one run
        # at a schedule's priority starts when a slot frees, not after bulk's queue.
        assert crawlhub("spiders", "set", "bulk", "--max-concurrent-runs", "0", env=cli,
                        cwd=tmp_path).returncode == 0  # fmt: skip
        with ThreadPoolExecutor(4) as pool:
            burst = list(pool.map(lambda _: api.post("/api/spiders/bulk/run", json={
                "params": {"sleep": 0.3}}).json()["id"], range(120)))  # fmt: skip
        daily = api.post("/api/spiders/daily/run", json={"priority": 0}).json()["id"]
        started = eventually(lambda: (found := api.get(f"/api/tasks/{daily}").json())[
            "started_at"] and found, "daily's run started", timeout=60)  # fmt: skip
        bulk = [api.get(f"/api/tasks/{t}").json() for t in burst]
        still = [t for t in bulk if t["started_at"] is None or t["started_at"] > started[
            "started_at"]]  # fmt: skip
        assert len(still) >= 30, len(still)  # it did not wait for bulk's queue
        jumped = [t for t in bulk if t["started_at"] and started["created_at"] < t["started_at"]
                  < started["started_at"]]  # fmt: skip
        assert len(jumped) <= 6, len(jumped)  # at most the slots free meanwhile went to bulk
        for task_id in burst:
            api.post(f"/api/tasks/{task_id}/cancel")
    finally:
        api.close()
        for proc in (web, *workers):
            if proc.proc.poll() is None:
                proc.stop()
