"""Client commands import nothing of the server: they start in tens of milliseconds."""

import subprocess
import sys

SERVER_LIBRARIES = ("sqlalchemy", "pydantic", "starlette", "uvicorn", "dramatiq", "redis",
                    "psycopg", "prometheus_client", "httpx", "jinja2", "scrapy", "alembic")  # fmt: skip
PROBE = """
import sys
from crawlhub.cli.main import main
status = main(sys.argv[1:])
loaded = sorted({name.split(".")[0] for name in sys.modules})
print("LOADED", " ".join(loaded), file=sys.stderr)
"""


def loaded_by(*args: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "CRAWLHUB_URL": "http://127.0.0.1:9",
                               "CRAWLHUB_TOKEN": "t"}, timeout=60, check=False)  # fmt: skip
    line = next(x for x in done.stderr.splitlines() if x.startswith("LOADED "))
    return set(line.split()[1:])


def test_help_and_client_commands_load_no_server_library() -> None:
    # `runs` and `spiders list` fail to reach the server (port 9): they got that far.
    for args in (["--help"], ["runs"], ["spiders", "list", "--json"], ["deploy", "--help"]):
        modules = loaded_by(*args)
        assert "crawlhub" in modules and "click" in modules
        assert not modules & set(SERVER_LIBRARIES), (args, modules & set(SERVER_LIBRARIES))


def test_the_help_of_server_commands_loads_no_server_library_either() -> None:
    for args in (["web", "--help"], ["up", "--help"], ["--version"]):
        assert not loaded_by(*args) & set(SERVER_LIBRARIES), args
