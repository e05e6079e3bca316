"""The README is a front page and every link in it and in docs/ leads somewhere that exists:
relative targets are files of the repository, anchors are headings of their page."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
EXTERNAL = ("http://", "https://", "mailto:")


def prose(text: str) -> str:
    """The text without fenced code blocks and code spans, where nothing is a link."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def links(page: Path) -> list[str]:
    return LINK.findall(prose(page.read_text()))


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, only letters, digits, spaces, hyphens and
    underscores kept, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(heading) for heading in HEADING.findall(FENCE.sub("", page.read_text()))}


def name(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_every_relative_link_resolves_inside_the_repository(page: Path) -> None:
    broken, outside, bad_anchors = [], [], []
    for target in links(page):
        if target.startswith(EXTERNAL):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.is_relative_to(ROOT):
            outside.append(target)
        elif not resolved.exists():
            broken.append(target)
        elif anchor and (resolved.suffix != ".md" or anchor not in anchors(resolved)):
            bad_anchors.append(target)
    assert (broken, outside, bad_anchors) == ([], [], [])


def test_the_readme_is_a_front_page_that_stands_alone() -> None:
    text = README.read_text()
    assert len(text.splitlines()) < 250
    assert "../shared" not in text
    assert text.count("## Five-minute tour") == 1
    assert any(target.startswith("docs/") for target in links(README))


def test_the_link_checker_sees_links_anchors_and_code() -> None:
    assert slug("Processes (production)") == "processes-production"
    assert slug("What `make up` needs") == "what-make-up-needs"
    text = "[a](x.md#y) ![b](img.png) `[c](no.md)`\n```sh\n[d](no.md)\n```\n[e](https://e)"
    assert LINK.findall(prose(text)) == ["x.md#y", "img.png", "https://e"]
