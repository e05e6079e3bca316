"""The sandbox's parts that decide without starting anything: the command chain, the view,
limits and disk usage, slots, cgroup files, the services a firewall guards. What the
sandbox then holds against real uploaded code is shown in tests/integration/test_sandbox.py."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from crawlhub.config import load_settings
from crawlhub.errors import ConfigError
from crawlhub.sandbox import firewall, limits, spawn
from crawlhub.sandbox.cgroups import Group, Tree
from crawlhub.sandbox.isolation import Isolation
from crawlhub.sandbox.limits import Limits, MiB
from crawlhub.sandbox.slots import Pool, Slot
from crawlhub.sandbox.views import View, accounts, bwrap_args
from crawlhub.worker.sandboxes import check_shown_paths

DEFAULTS = Limits(memory_mb=2048, processes=512, open_files=16384, disk_mb=1024, files=50_000)
NO_CGROUPS = Tree(None, {}, "none here")


def isolation(mode: str, *, root: bool) -> Isolation:
    return Isolation(mode, root, range(5000, 5010) if root else None,
                     "/usr/bin/bwrap" if mode == "bwrap" else None, "/usr/bin/setpriv",
                     "/usr/bin/env", NO_CGROUPS)  # fmt: skip


def chain(mode: str, *, root: bool, env: dict[str, str] | None = None) -> list[str]:
    slot = Slot(3, 5003 if root else None, Path("/data"))
    spec = spawn.Spec(["/usr/bin/python3", "-c", "pass"], env or {"LD_PRELOAD": "./x.so"},
                      View(cwd=Path("/data/work/slot-3/run")), DEFAULTS, "run-1")  # fmt: skip
    return spawn.command(isolation(mode, root=root), slot, spec)[0]


def test_a_root_workers_chain_switches_user_after_the_view_and_sets_the_env_last() -> None:
    argv = chain("bwrap", root=True)
    bwrap, setpriv, env = argv.index("/usr/bin/bwrap"), argv.index("/usr/bin/setpriv"), \
        argv.index("/usr/bin/env")  # fmt: skip
    assert bwrap == 0 and bwrap < setpriv < env < argv.index("/usr/bin/python3")
    between = argv[bwrap:setpriv]
    assert between[-1] == "--" and "--unshare-pid" in between and "--die-with-parent" in between
    # bubblewrap keeps only what setpriv needs to become the slot's user, once
    assert between[between.index("--cap-drop"):][:8] == [
        "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
        "--cap-add", "CAP_SETPCAP"]  # fmt: skip
    user = argv[setpriv:env]
    for flag in ("--reuid=5003", "--regid=5003", "--clear-groups", "--no-new-privs",
                 "--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all"):  # fmt: skip
        assert flag in user
    # the spider's own variables reach only its program: after every privileged step
    assert argv.index("LD_PRELOAD=./x.so") > env
    assert argv[env:env + 5] == ["/usr/bin/env", "--default-signal=TERM,INT,HUP", "-i", "-C",
                                 "/data/work/slot-3/run"]  # fmt: skip


def test_a_non_root_workers_chain_makes_a_user_namespace_and_switches_no_user() -> None:
    argv = chain("bwrap", root=False)
    assert "--unshare-user" in argv and "--disable-userns" in argv
    assert not any(a.startswith("--reuid") for a in argv) and "CAP_SETUID" not in argv
    assert "--no-new-privs" in argv


@pytest.mark.parametrize(("mode", "root"), [("users", True), ("off", False)])
def test_without_bubblewrap_the_chain_is_the_same_less_that_step(mode: str, root: bool) -> None:
    argv = chain(mode, root=root)
    assert argv[0] == "/usr/bin/setpriv" and "/usr/bin/bwrap" not in argv
    assert ("--reuid=5003" in argv) == root


@pytest.mark.parametrize("name", ["1ABC", "A-B", "A=B", "", "A B"])
def test_a_variable_name_env_would_misread_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not an environment variable name"):
        chain("bwrap", root=True, env={name: "x"})


def test_the_shim_waits_for_the_go_ahead_and_runs_nothing_without_it(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    read, write = os.pipe()
    proc = subprocess.Popen(["/bin/sh", "-c", spawn.SHIM, "shim", "/usr/bin/touch", str(marker)],
                            stdin=read)  # fmt: skip
    os.close(read)
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(0.3)
    assert not marker.exists()
    os.close(write)  # the worker died before letting it go
    assert proc.wait(5) == 70 and not marker.exists()


def test_the_view_binds_tmp_first_makes_parents_traversable_and_skips_what_usr_shows() -> None:
    view = View(read_only=(Path("/root/.pyenv/versions/3.11"), Path("/usr/lib/python3"),
                           Path("/root/.pyenv/versions/3.11/lib")),
                writable=(Path("/tmp/x/data/work/slot-0"),), cwd=Path("/tmp/x/data/work/slot-0"))  # fmt: skip
    args, data = bwrap_args(view, 5000)
    tmp = args.index("/tmp", args.index("--tmpfs"))
    bind = args.index("/tmp/x/data/work/slot-0")
    assert tmp < bind and args[bind - 1] == "--bind"
    for parent in ("/root", "/root/.pyenv", "/root/.pyenv/versions", "/tmp/x", "/tmp/x/data"):
        assert args[args.index(parent) - 1] == "--dir", parent  # 0755, not bubblewrap's 0700
    assert "/usr/lib/python3" not in args  # /usr is in view already
    assert args.count("/root/.pyenv/versions/3.11/lib") == 0  # below a bound path
    assert b"crawlhub-spider:x:5000:5000" in data["passwd"] and b"root:x:0:0" in data["passwd"]


def test_accounts_name_the_processes_user_and_nothing_of_the_machines() -> None:
    found = accounts(5000, Path("/w"))
    assert found["passwd"].decode().splitlines() == [
        "root:x:0:0:root:/:/usr/sbin/nologin",
        "crawlhub-spider:x:5000:5000:crawlhub-spider:/w:/usr/sbin/nologin",
        "nobody:x:65534:65534:nobody:/:/usr/sbin/nologin",
    ]


def test_a_spiders_limits_are_checked_and_take_the_place_of_the_defaults() -> None:
    assert limits.check({"memory_mb": 4096, "files": 100}) == {"memory_mb": 4096, "files": 100}
    for bad in ({"memory_mb": 63}, {"memory_mb": True}, {"disk": 1}, {"processes": "12"}):
        with pytest.raises(ValueError):
            limits.check(bad)
    merged = DEFAULTS.merged({"memory_mb": 4096})
    assert merged.memory_mb == 4096 and merged.processes == DEFAULTS.processes
    assert DEFAULTS.merged(None) is DEFAULTS


def test_disk_usage_counts_without_following_links_and_names_the_limit_it_is_over(
    tmp_path: Path,
) -> None:
    small = Limits(64, 16, 64, disk_mb=1, files=10)
    (tmp_path / "a").write_bytes(b"x" * 1000)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b").write_bytes(b"y" * 1000)
    (tmp_path / "link").symlink_to("/usr")  # not followed into /usr
    found = limits.usage([tmp_path], small)
    assert found.count == 4 and found.largest == 1000 and found.over(small) is None
    (tmp_path / "big").write_bytes(b"z" * MiB)  # as large as the limit: the kernel's cap
    assert limits.usage([tmp_path], small).over(small) == (
        "disk_mb", "it wrote a file as large as that")  # fmt: skip
    (tmp_path / "big").unlink()
    for n in range(10):
        (tmp_path / f"f{n}").touch()
    assert limits.usage([tmp_path], small).over(small) == (
        "files", "it held more than 10 files")  # fmt: skip


def test_slots_are_claimed_lowest_first_and_never_shared_with_another_worker(
    tmp_path: Path,
) -> None:
    locks, data = tmp_path / "locks", tmp_path / "data"
    other = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"os.makedirs({str(locks)!r}, exist_ok=True)\n"
        f"fd = os.open({str(locks / 'slot-0.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(60)\n"
    )], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert other.stdout is not None and other.stdout.readline() == "held\n"
        pool = Pool(locks, range(7000, 7010))
        with pool.take(data) as first, pool.take(data) as second:
            assert (first.number, first.uid) == (1, 7001)  # 0 is the other worker's
            assert (second.number, second.uid) == (2, 7002)
        with pool.take(data) as again:
            assert again.number == 1
    finally:
        other.kill()
        other.wait()
        assert other.stdout is not None
        other.stdout.close()


def test_a_slot_is_wiped_without_following_what_a_run_planted(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    slot = Slot(0, None, tmp_path / "data")
    slot.ensure()
    (slot.root / "run").mkdir()
    (slot.root / "run" / "link").symlink_to(outside)
    (slot.root / "escape").symlink_to(outside)
    (slot.tmp / "left").write_text("x")
    slot.wipe()
    assert sorted(p.name for p in slot.root.iterdir()) == ["tmp"] and not any(slot.tmp.iterdir())
    assert (outside / "keep").read_text() == "x"


def test_a_cgroups_counters_are_read_from_either_versions_files(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 1\noom_kill 2\n")
    (v2 / "pids.events").write_text("max 3\n")
    found = Group(2, {"memory": v2, "pids": v2}).counters()
    assert (found.oom_kills, found.forks_refused) == (2, 3)
    memory, pids = tmp_path / "memory", tmp_path / "pids"
    memory.mkdir()
    pids.mkdir()
    (memory / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 5\n")
    (pids / "pids.events").write_text("max 0\n")
    found = Group(1, {"memory": memory, "pids": pids}).counters()
    assert (found.oom_kills, found.forks_refused) == (5, 0)
    assert Group(1, {"memory": tmp_path / "gone"}).counters().oom_kills == 0


def test_the_firewall_guards_the_tcp_services_of_the_urls_and_nothing_else() -> None:
    assert firewall.endpoints([
        "postgresql+psycopg://u:p@db.internal:6543/crawlhub", "redis://:pw@10.0.0.5/0",
        "rediss://cache:6380", "sqlite:///./crawlhub.db", "unix:///run/redis.sock",
    ]) == [("db.internal", 6543), ("10.0.0.5", 6379), ("cache", 6380)]  # fmt: skip
    assert firewall.protect(isolation("bwrap", root=False), ["redis://h:1/0"]).startswith(
        "not enforced")  # fmt: skip
    assert firewall.protect(isolation("bwrap", root=True), ["sqlite:///x"]) == (
        "no service of CrawlHub's is on the network")  # fmt: skip


@pytest.mark.parametrize("shown", ["{data}", "{data}/work", "{root}", "/"])
def test_a_path_shown_to_spiders_that_holds_or_lies_in_the_data_dir_is_refused(
    tmp_path: Path, shown: str
) -> None:
    data = tmp_path / "data"
    path = shown.format(data=data, root=tmp_path)
    for name in ("sandbox_read_only", "sandbox_writable"):
        settings = load_settings(data_dir=data, **{name: path})
        with pytest.raises(ConfigError, match="would show spiders the data dir"):
            check_shown_paths(settings)
