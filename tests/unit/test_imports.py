"""Every module imports on its own: no import cycle hides behind an import order."""

import subprocess
import sys

SCRIPT = """
import importlib, pkgutil, sys
import crawlhub
from prometheus_client import REGISTRY
names = [m.name for m in pkgutil.walk_packages(crawlhub.__path__, "crawlhub.")
         if not m.name.startswith("crawlhub.repo.migrations") and m.name != "crawlhub.__main__"]
failed = []
for name in names:
    for loaded in [k for k in sys.modules if k == "crawlhub" or k.startswith("crawlhub.")]:
        del sys.modules[loaded]
    for collector in list(REGISTRY._collector_to_names):  # metrics register on import
        REGISTRY.unregister(collector)
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {exc!r}")
print(len(names))
print("\\n".join(failed))
"""


def test_every_module_imports_first() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    count, *failures = result.stdout.strip().splitlines()
    assert int(count) > 30
    assert failures == []
