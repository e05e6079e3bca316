"""The import-linter contracts hold for the tree, and break when a layer is crossed."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """Run lint-imports with the project's contracts against the package copy in `tree`."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(tree / "pyproject.toml")],
        cwd=tree,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the package and its contracts, free to be broken."""
    shutil.copytree(ROOT / "crawlhub", tmp_path / "crawlhub",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def add_import(tree: Path, module: str, line: str) -> None:
    path = tree / (module.replace(".", "/") + ".py")
    path.write_text(path.read_text() + f"\n{line}\n")


def test_the_tree_keeps_every_contract(tree: Path) -> None:
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_repo_importing_web_breaks_the_layers(tree: Path) -> None:
    add_import(tree, "crawlhub.repo.pages", "from crawlhub.web import validation  # noqa")
    result = lint_imports(tree)
    assert result.returncode == 1
    assert "Layers: entry points, adapters, domain, infrastructure BROKEN" in result.stdout
    assert "crawlhub.repo.pages -> crawlhub.web.validation" in result.stdout


def test_a_type_only_import_of_a_higher_layer_breaks_the_layers(tree: Path) -> None:
    add_import(tree, "crawlhub.context", "from typing import TYPE_CHECKING\n"
               "if TYPE_CHECKING:\n    from crawlhub.worker import supervisor  # noqa")  # fmt: skip
    result = lint_imports(tree)
    assert result.returncode == 1
    assert "crawlhub.context -> crawlhub.worker.supervisor" in result.stdout


def test_the_dashboard_and_the_api_are_independent_of_each_other(tree: Path) -> None:
    add_import(tree, "crawlhub.ui.pages.runs", "from crawlhub.http.routes import data  # noqa")
    add_import(tree, "crawlhub.http.routes.runs", "from crawlhub.ui import charts  # noqa")
    result = lint_imports(tree)
    assert result.returncode == 1
    assert "Layers: entry points, adapters, domain, infrastructure BROKEN" in result.stdout
    assert "crawlhub.ui.pages.runs -> crawlhub.http.routes.data" in result.stdout
    assert "crawlhub.http.routes.runs -> crawlhub.ui.charts" in result.stdout


@pytest.mark.parametrize("module", ["crawlhub.ui.pages.runs", "crawlhub.http.routes.runs",
                                    "crawlhub.web.sse"])  # fmt: skip
def test_a_face_importing_the_orm_models_breaks_its_contract(tree: Path, module: str) -> None:
    add_import(tree, module, "from crawlhub.repo.models import Task  # noqa")
    result = lint_imports(tree)
    assert result.returncode == 1
    assert "never the ORM models BROKEN" in result.stdout.replace("\n", " ")
    assert f"{module} -> crawlhub.repo.models" in result.stdout


def test_child_importing_the_server_breaks_its_contract(tree: Path) -> None:
    add_import(tree, "crawlhub.child.bootstrap", "from crawlhub import config  # noqa")
    result = lint_imports(tree)
    assert result.returncode == 1
    assert "Spider-side code (child, sdk) imports nothing of the server BROKEN" in result.stdout


def test_a_cycle_between_sibling_modules_breaks_its_contract(tree: Path) -> None:
    add_import(tree, "crawlhub.worker.workdirs", "from crawlhub.worker import supervisor")
    result = lint_imports(tree)
    assert result.returncode == 1
    assert "No import cycles among the modules of any package BROKEN" in result.stdout


def test_no_code_assigns_a_status_outside_the_state_machine() -> None:
    assignment = re.compile(r"\.status\s*=[^=]")
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for path in sorted((ROOT / "crawlhub").rglob("*.py"))
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if assignment.search(line)]  # fmt: skip
    assert found == []
