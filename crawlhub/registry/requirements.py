"""What a package needs installed: its requirements.txt, an egg's EGG-INFO/requires.txt,
or its pyproject.toml's `[project] dependencies`, checked and normalised into one canonical
text (one requirement per line, sorted), so that equal needs share one environment."""

import tomllib

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from crawlhub.errors import InvalidArchive
from crawlhub.registry import archives

MAX_FILE_BYTES = 256 * 1024
MAX_REQUIREMENTS = 500


def of_package(data: bytes, info: archives.ArchiveInfo) -> str | None:
    """The package's normalised requirements; None when it declares none."""
    text = archives.read_member(data, info, "requirements.txt", MAX_FILE_BYTES)
    if text is not None:
        return normalise(_lines(_decode(text, "requirements.txt")), "requirements.txt")
    egg = archives.read_member(data, info, "EGG-INFO/requires.txt", MAX_FILE_BYTES)
    if egg is not None:  # an egg's install_requires; its [extra] sections are left out
        lines = _decode(egg, "EGG-INFO/requires.txt").split("\n[", 1)[0]
        return normalise(_lines(lines), "EGG-INFO/requires.txt")
    pyproject = archives.read_member(data, info, "pyproject.toml", MAX_FILE_BYTES)
    if pyproject is None:
        return None
    try:
        project = tomllib.loads(_decode(pyproject, "pyproject.toml")).get("project", {})
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArchive(f"pyproject.toml is not valid TOML: {exc}") from None
    dependencies = project.get("dependencies", []) if isinstance(project, dict) else []
    if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
        raise InvalidArchive("pyproject.toml: [project] dependencies must be a list of strings")
    return normalise([(n, d) for n, d in enumerate(dependencies, 1)], "pyproject.toml")


def normalise(lines: list[tuple[int, str]], source: str) -> str | None:
    """Check each requirement and return them canonical and sorted; None when there are none."""
    seen: dict[str, str] = {}
    for number, line in lines:
        if line.startswith("-"):
            raise InvalidArchive(
                f"{source} line {number}: options such as {line.split()[0]!r} are not "
                "supported; the package index is the operator's (CRAWLHUB_PACKAGE_INDEX_URL)"
            )
        try:
            requirement = Requirement(line)
        except InvalidRequirement as exc:
            raise InvalidArchive(f"{source} line {number}: {exc}") from None
        requirement.name = canonicalize_name(requirement.name)
        seen[str(requirement)] = str(requirement)
    if len(seen) > MAX_REQUIREMENTS:
        raise InvalidArchive(f"{source}: more than {MAX_REQUIREMENTS} requirements")
    return "\n".join(sorted(seen)) or None


def names(requirements: str) -> set[str]:
    """The canonical project names the requirements ask for."""
    return {Requirement(line).name for line in requirements.splitlines() if line}


def _lines(text: str) -> list[tuple[int, str]]:
    """Requirement lines with their numbers: comments, blanks and continuations handled."""
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if pending:
            line, number = pending + line, start
            pending = ""
        if line.endswith("\\"):
            pending, start = line[:-1], number
            continue
        if line:
            out.append((number, line))
    if pending.strip():
        out.append((start, pending.strip()))
    return out


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidArchive(f"{name} is not UTF-8 text") from None
