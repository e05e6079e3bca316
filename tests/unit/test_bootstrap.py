"""Unit tests for crawlhub.child.bootstrap and crawlhub.sdk: real spider child processes."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent.parent / "fixtures" / "spiders"


@dataclass
class Run:
    """What a finished child left behind."""

    returncode: int
    raw_items: bytes
    stdout: str
    stderr: str

    @property
    def items(self) -> list[Any]:
        """Every line of the item channel, parsed by a strict JSON parser.

        Split on b"\\n" only: str.splitlines() also breaks at U+2028, U+2029 and
        U+0085, which JSON leaves unescaped inside strings.
        """
        assert self.raw_items == b"" or self.raw_items.endswith(b"\n")
        return [
            json.loads(line.decode("utf-8"), parse_constant=reject_constant)
            for line in self.raw_items.split(b"\n")[:-1]
        ]


def reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


class Child:
    """A bootstrap child started the way the worker starts it, its item pipe being drained."""

    def __init__(self, cwd: Path, args: list[str], env: dict[str, str]) -> None:
        read_fd, write_fd = os.pipe()
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(cwd),
            "LANG": "C.UTF-8",
            "CRAWLHUB_ITEMS_FD": str(write_fd),
            **env,
        }
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "crawlhub.child.bootstrap", *args],
                cwd=cwd,
                env=environment,
                pass_fds=(write_fd,),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        finally:
            os.close(write_fd)
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._drain, args=(read_fd,), daemon=True)
        self._reader.start()

    def _drain(self, fd: int) -> None:
        with open(fd, "rb", buffering=0) as pipe:
            while chunk := pipe.read(1 << 16):
                self._chunks.append(chunk)

    def finish(self, timeout: float = 15) -> Run:
        try:
            stdout, stderr = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.communicate()
            raise
        finally:
            self._reader.join()
        return Run(
            self.process.returncode,
            b"".join(self._chunks),
            stdout.decode("utf-8", "replace"),
            stderr.decode("utf-8", "replace"),
        )


def run_python(tmp_path: Path, source: str, entry: str = "main:run", **env: str) -> Run:
    """Run ``source`` (saved as main.py in a fresh work dir) through bootstrap's python mode."""
    (tmp_path / "main.py").write_text(source, encoding="utf-8")
    return Child(tmp_path, ["python", entry], env).finish()


def test_a_generator_spider_delivers_every_yielded_item(tmp_path: Path) -> None:
    run = run_python(tmp_path, "def run(params):\n    for n in range(5):\n        yield {'n': n}\n")

    assert run.returncode == 0, run.stderr
    assert run.items == [{"n": n} for n in range(5)]


def test_a_returned_list_gives_one_item_per_element(tmp_path: Path) -> None:
    run = run_python(tmp_path, "def run(params):\n    return [{'a': 1}, {'b': 2}, 3]\n")

    assert run.returncode == 0, run.stderr
    assert run.items == [{"a": 1}, {"b": 2}, 3]


def test_a_returned_dict_is_a_single_item(tmp_path: Path) -> None:
    run = run_python(tmp_path, "def run(params):\n    return {'a': 1, 'b': [1, 2]}\n")

    assert run.returncode == 0, run.stderr
    assert run.items == [{"a": 1, "b": [1, 2]}]


def test_a_spider_returning_none_saves_nothing_and_succeeds(tmp_path: Path) -> None:
    run = run_python(tmp_path, "def run(params):\n    print('ran')\n")

    assert (run.returncode, run.raw_items, run.stdout) == (0, b"", "ran\n")


def test_items_saved_through_the_sdk_and_returned_items_both_arrive_in_order(
    tmp_path: Path,
) -> None:
    source = """
from crawlhub.sdk import save_item, save_items

def run(params):
    save_item({"via": "save_item"})
    assert save_items({"via": "save_items", "n": n} for n in range(2)) == 2
    return [{"via": "return"}]
"""
    run = run_python(tmp_path, source)

    assert run.returncode == 0, run.stderr
    assert run.items == [
        {"via": "save_item"},
        {"via": "save_items", "n": 0},
        {"via": "save_items", "n": 1},
        {"via": "return"},
    ]


def test_params_reach_the_entry_function(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "jobs.py").write_text("def crawl(params):\n    return params\n")
    params = {"city": "Zürich", "pages": 3, "tags": ["a", "b"]}

    child = Child(tmp_path, ["python", "pkg.jobs:crawl"], {"CRAWLHUB_PARAMS": json.dumps(params)})

    result = child.finish()

    assert result.returncode == 0, result.stderr
    assert result.items == [params]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("nowhere:run", "crawlhub: cannot import 'nowhere': no module 'nowhere' in "),
        ("main:crawl", "crawlhub: module 'main' has no function 'crawl'"),
        ("main", "crawlhub: entry 'main' is not of the form module.sub:function"),
    ],
)
def test_an_entry_that_cannot_be_found_exits_2_with_one_clear_line(
    tmp_path: Path, entry: str, message: str
) -> None:
    run = run_python(tmp_path, "def run(params):\n    return {}\n", entry=entry)

    assert run.returncode == 2
    assert run.stderr.startswith(message)
    assert run.stderr.count("\n") == 1


def test_a_missing_dependency_of_the_spider_is_a_spider_error_not_a_missing_entry(
    tmp_path: Path,
) -> None:
    run = run_python(tmp_path, "import no_such_dependency\n\ndef run(params):\n    return {}\n")

    assert run.returncode == 1
    assert "ModuleNotFoundError: No module named 'no_such_dependency'" in run.stderr
    assert "main.py" in run.stderr


def test_an_exception_exits_1_with_its_traceback_and_earlier_items_are_kept(
    tmp_path: Path,
) -> None:
    source = """
def run(params):
    yield {"n": 1}
    yield {"n": 2}
    raise RuntimeError("site changed its layout")
"""
    run = run_python(tmp_path, source)

    assert run.returncode == 1
    assert run.items == [{"n": 1}, {"n": 2}]
    assert run.stderr.startswith("Traceback (most recent call last):")
    assert 'main.py", line 5, in run' in run.stderr
    assert run.stderr.rstrip().endswith("RuntimeError: site changed its layout")
    assert "bootstrap.py" not in run.stderr


def test_values_json_cannot_hold_still_give_valid_json_lines(tmp_path: Path) -> None:
    source = """
import datetime, decimal

def run(params):
    nan = float("nan")
    yield {
        "when": datetime.datetime(2024, 5, 6, 7, 8, 9),
        "price": decimal.Decimal("19.90"),
        "tags": {"only"},
        "missing": nan,
        "limits": [float("inf"), -float("inf"), 1.5],
        (1, 2): "tuple key",
        nan: "nan key",
    }
    yield nan
"""
    run = run_python(tmp_path, source)

    assert run.returncode == 0, run.stderr
    assert run.items == [
        {
            "when": "2024-05-06 07:08:09",
            "price": "19.90",
            "tags": ["only"],
            "missing": None,
            "limits": [None, None, 1.5],
            "(1, 2)": "tuple key",
            "nan": "nan key",
        },
        None,
    ]


SDK_EDGES = r"""
import dataclasses, datetime, enum, uuid

class Colour(enum.Enum):
    RED = "red"
    PAIR = (1, 2)

class Level(enum.IntEnum):
    HIGH = 3

class Price(float):
    pass

@dataclasses.dataclass
class Point:
    x: int

def edges():
    deep = []
    for _ in range(300):
        deep = [deep]
    return [
        {"colour": Colour.RED, "pair": Colour.PAIR, "level": Level.HIGH, "price": Price(2.5)},
        {"day": datetime.date(2024, 5, 6), "at": datetime.time(7, 8), "point": Point(1)},
        {"id": uuid.UUID(int=1), "big": 2**70, "neg": -(2**64)},
        {"broken": "a\udcffb", "nul": "a\x00b", "tuple": (1, "two")},
        {1: "int key", Colour.RED: "enum key"},
        {"deep": deep},
        {"nan": float("nan"), "float": 0.1, "tiny": 5e-324, "huge": 1e300},
    ]
"""


def _sdk_edges() -> list[Any]:
    namespace: dict[str, Any] = {}
    exec(SDK_EDGES, namespace)  # noqa: S102 - the test's own source
    return namespace["edges"]()  # type: ignore[no-any-return]


def test_orjson_and_json_write_every_kind_of_value_the_same_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from crawlhub import sdk

    items = _sdk_edges()
    fast = [sdk._line(item) for item in items]
    assert sdk._fast  # orjson is installed with CrawlHub: the fast path was taken
    monkeypatch.setattr(sdk, "_fast", False)
    slow = [sdk._line(item) for item in items]
    # The same values (float formatting may differ: 1e+300 against 1e300).
    assert [json.loads(line) for line in fast] == [json.loads(line) for line in slow]
    assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in fast + slow)


def test_enums_floats_big_integers_and_lone_surrogates_arrive_as_documented(
    tmp_path: Path,
) -> None:
    run = run_python(tmp_path, SDK_EDGES + "\ndef run(params):\n    return edges()\n")

    assert run.returncode == 0, run.stderr
    items = run.items
    assert items[0] == {"colour": "red", "pair": [1, 2], "level": 3, "price": 2.5}
    assert items[1] == {"day": "2024-05-06", "at": "07:08:00", "point": "Point(x=1)"}
    assert items[2] == {"id": "00000000-0000-0000-0000-000000000001", "big": 2**70, "neg": -(2**64)}
    assert items[3] == {"broken": "a?b", "nul": "a\x00b", "tuple": [1, "two"]}
    assert items[4] == {"1": "int key", "Colour.RED": "enum key"}
    depth, value = 0, items[5]["deep"]
    while value:
        depth, value = depth + 1, value[0]
    assert depth == 300
    assert items[6] == {"nan": None, "float": 0.1, "tiny": 5e-324, "huge": 1e300}


def test_unicode_and_emoji_arrive_as_utf8_one_line_per_item(tmp_path: Path) -> None:
    source = (
        "def run(params):\n"
        "    return [{'text': 'Ünïcödé 漢字 🕷️'}, {'text': 'two\\nlines\\u2028and\\x85more'}]\n"
    )
    run = run_python(tmp_path, source)

    assert run.returncode == 0, run.stderr
    assert "Ünïcödé 漢字 🕷️".encode() in run.raw_items
    assert run.raw_items.count(b"\n") == 2
    assert run.items == [{"text": "Ünïcödé 漢字 🕷️"}, {"text": "two\nlines\u2028and\x85more"}]


def test_a_child_whose_worker_is_already_gone_exits_70_before_running_the_spider(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "ran"
    source = f"def run(params):\n    open({str(marker)!r}, 'w').close()\n    return {{}}\n"
    started = time.monotonic()

    (tmp_path / "main.py").write_text(source)
    read_fd, write_fd = os.pipe()
    os.close(read_fd)  # the worker, which reads the items, is gone
    try:
        run = subprocess.run(
            [sys.executable, "-m", "crawlhub.child.bootstrap", "python", "main:run"],
            cwd=tmp_path, env={"CRAWLHUB_ITEMS_FD": str(write_fd)}, pass_fds=(write_fd,),
            capture_output=True, text=True, timeout=15, check=False,
        )  # fmt: skip
    finally:
        os.close(write_fd)

    assert run.returncode == 70
    assert time.monotonic() - started < 5
    assert not marker.exists()
    assert "the worker is gone" in run.stderr


def test_sigterm_flushes_the_saved_items_and_exits_143(tmp_path: Path) -> None:
    source = """
import time
from crawlhub.sdk import save_item

def run(params):
    for n in range(3):
        save_item({"n": n})
    try:
        print("saved")
        time.sleep(60)
    finally:
        print("cleaned up")
"""
    (tmp_path / "main.py").write_text(source)
    child = Child(tmp_path, ["python", "main:run"], {})
    assert child.process.stdout is not None
    ready = child.process.stdout.readline()

    os.killpg(child.process.pid, signal.SIGTERM)  # as the worker does: the process group
    run = child.finish()

    assert ready == b"saved\n", run.stderr
    assert run.returncode == 143
    assert run.items == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert run.stdout == "cleaned up\n"


def test_sys_exit_in_the_spider_keeps_its_status_and_delivers_its_items(tmp_path: Path) -> None:
    source = """
import sys
from crawlhub.sdk import save_item

def run(params):
    save_item({"n": 1})
    sys.exit(3)
"""
    run = run_python(tmp_path, source)

    assert run.returncode == 3
    assert run.items == [{"n": 1}]


def test_an_async_generator_spider_is_run_to_completion(tmp_path: Path) -> None:
    source = """
import asyncio

async def run(params):
    for n in range(3):
        await asyncio.sleep(0)
        yield {"n": n}
"""
    run = run_python(tmp_path, source)

    assert run.returncode == 0, run.stderr
    assert run.items == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_items_from_many_threads_and_larger_than_the_buffer_stay_whole_lines(
    tmp_path: Path,
) -> None:
    source = """
import threading
from crawlhub.sdk import save_item

def work(thread):
    for n in range(2000):
        save_item({"thread": thread, "n": n, "pad": "x" * 500})

def run(params):
    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"big": "y" * 1_000_000}
"""
    run = run_python(tmp_path, source)

    assert run.returncode == 0, run.stderr
    items = run.items
    assert len(items) == 8 * 2000 + 1
    assert sorted((i["thread"], i["n"]) for i in items[:-1]) == [
        (t, n) for t in range(8) for n in range(2000)
    ]
    assert items[-1] == {"big": "y" * 1_000_000}


def test_a_closed_item_channel_ends_the_run_quietly(tmp_path: Path) -> None:
    source = """
from crawlhub.sdk import save_item

def run(params):
    print("started")
    input()  # until the reader below is gone
    while True:
        save_item({"pad": "x" * 1000})
"""
    (tmp_path / "main.py").write_text(source)
    read_fd, write_fd = os.pipe()
    env = {"PATH": os.environ.get("PATH", ""), "CRAWLHUB_ITEMS_FD": str(write_fd)}
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "crawlhub.child.bootstrap", "python", "main:run"],
            cwd=tmp_path, env=env, pass_fds=(write_fd,),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
    finally:
        os.close(write_fd)
    assert child.stdout is not None
    assert child.stdout.readline() == b"started\n"
    os.close(read_fd)  # CrawlHub stops reading items
    _, stderr = child.communicate(b"go\n", timeout=15)

    assert (child.returncode, stderr) == (141, b"")


def test_a_script_run_by_hand_prints_its_items_on_stdout(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text("from crawlhub.sdk import save_item\nsave_item({'é': 1})\nprint('done')\n")
    env = {k: v for k, v in os.environ.items() if k != "CRAWLHUB_ITEMS_FD"}

    run = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, timeout=15, check=True
    )

    assert run.stdout.decode() == '{"é":1}\ndone\n'


PAGES = {
    "/": ("Home", ["/a", "/b"]),
    "/a": ("Page A", ["/", "/b"]),
    "/b": ("Page B", ["/a"]),
}


class SiteHandler(http.server.BaseHTTPRequestHandler):
    """Three pages that link to each other."""

    def do_GET(self) -> None:
        if self.path not in PAGES:
            self.send_error(404)
            return
        title, links = PAGES[self.path]
        anchors = "".join(f'<a href="{link}">{link}</a>' for link in links)
        body = f"<html><head><title>{title}</title></head><body>{anchors}</body></html>"
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def site() -> Iterator[str]:
    """The base URL of a local three-page site."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SiteHandler)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@pytest.mark.parametrize(
    ("spider", "extension"),
    [("pages", "project"), ("pages_own_extensions", "spider")],
    ids=["project-extensions", "spider-custom-extensions"],
)
def test_a_scrapy_crawl_delivers_its_items_and_final_stats(
    tmp_path: Path, site: str, spider: str, extension: str
) -> None:
    project = tmp_path / "work"
    shutil.copytree(FIXTURES / "marked_scrapy", project)
    stats_path = tmp_path / "stats.json"

    run = Child(
        project,
        ["scrapy", spider, "-a", f"start_url={site}"],
        {"CRAWLHUB_STATS_PATH": str(stats_path)},
    ).finish(timeout=30)

    assert run.returncode == 0, run.stderr
    assert sorted(run.items, key=lambda item: item["url"]) == [
        {"url": site, "title": "Home"},
        {"url": f"{site}a", "title": "Page A"},
        {"url": f"{site}b", "title": "Page B"},
    ]
    stats = json.loads(stats_path.read_text(), parse_constant=reject_constant)
    assert stats["response_received_count"] == 3
    assert stats["item_scraped_count"] == 3
    assert stats["finish_reason"] == "finished"
    datetime.fromisoformat(stats["start_time"])
    # The project's (or spider's) own EXTENSIONS still ran beside CrawlHub's.
    assert stats["marked/extension"] == extension
    # The project's own feed still got written, and both feeds are counted.
    assert len((project / "project-items.jsonl").read_text().splitlines()) == 3
    assert stats["feedexport/success_count/FileFeedStorage"] == 2
    assert not list(tmp_path.glob("*.tmp"))


def test_scrapy_mode_outside_a_scrapy_project_exits_2_with_one_clear_line(
    tmp_path: Path,
) -> None:
    run = Child(tmp_path, ["scrapy", "pages"], {}).finish()

    assert run.returncode == 2
    assert run.stderr == f"crawlhub: no scrapy.cfg in {tmp_path}: not a Scrapy project\n"
