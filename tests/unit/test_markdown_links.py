"""The README stays a first read, and no page of the repository sends its reader to a file that a
clone does not have: every relative link of every markdown file names a file inside the repository
that exists, and an anchor that its headings have (as GitHub and MkDocs spell them)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

REPO = Path(__file__).resolve().parents[2]
SKIPPED_DIRS = {"site", "node_modules", "out"}
INLINE = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.M)


def markdown_files() -> list[Path]:
    return sorted(
        path
        for path in REPO.rglob("*.md")
        if not any(part.startswith(".") or part in SKIPPED_DIRS for part in path.relative_to(REPO).parts[:-1])
    )


def without_fences(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def prose(text: str) -> str:
    """The text without code blocks and inline code, where brackets are not links."""
    return re.sub(r"`[^`\n]*`", "", without_fences(text))


def links(path: Path) -> list[str]:
    text = prose(path.read_text())
    return INLINE.findall(text) + REFERENCE.findall(text)


def anchors(path: Path) -> set[str]:
    """The heading ids GitHub gives (spaces to hyphens) and MkDocs gives (runs collapsed)."""
    found = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", without_fences(path.read_text()), re.M):
        words = re.sub(r"[^\w\- ]", "", heading.replace("`", "")).strip().lower()
        found |= {words.replace(" ", "-"), re.sub(r"[-\s]+", "-", words)}
    return found


def broken_links(path: Path, root: Path = REPO) -> list[str]:
    broken = []
    for link in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", link, re.I):  # https:, mailto:: outside by design
            continue
        target, _, anchor = unquote(link).partition("#")
        resolved = (path.parent / target).resolve() if target else path
        if not resolved.is_relative_to(root):
            broken.append(f"{link} (outside the repository)")
        elif not resolved.exists():
            broken.append(f"{link} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor.lower() not in anchors(resolved):
            broken.append(f"{link} (no such heading)")
    return broken


def named_paths(path: Path) -> list[str]:
    """Repository paths a page names in inline code (`shared/adapters/kafka.py`, `tests/unit/`)."""
    spans = re.findall(r"`([^`\n]+)`", without_fences(path.read_text()))
    return [
        span
        for span in spans
        if re.fullmatch(r"(shared|services|tests|bench|deploy|docs|examples)/[\w./-]+", span)
        and not span.startswith(GENERATED)
    ]


GENERATED = ("bench/out/",)  # written by `make bench`, not committed


def test_the_readme_is_a_first_read_of_at_most_250_lines():
    assert len((REPO / "README.md").read_text().splitlines()) <= 250


def test_no_markdown_link_points_outside_the_repository_or_at_nothing():
    assert len(markdown_files()) > 5
    broken = {str(path.relative_to(REPO)): found for path in markdown_files() if (found := broken_links(path))}
    assert broken == {}


def test_the_link_check_catches_a_link_out_of_the_repository_a_missing_file_and_a_missing_heading(tmp_path):
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "api.md").write_text("# API\n\n## Upload API (sending photos)\n")
    page = root / "README.md"
    page.write_text(
        "[contract](../shared/DESIGN.md) [a](docs/api.md#no-such-part) [b](docs/gone.md)\n"
        "[c](docs/api.md#upload-api-sending-photos) [d](https://example.org/x) `[e](../code)`\n"
    )
    assert broken_links(page.resolve(), root.resolve()) == [
        "../shared/DESIGN.md (outside the repository)",
        "docs/api.md#no-such-part (no such heading)",
        "docs/gone.md (no such file)",
    ]


def test_every_repository_path_the_readme_and_docs_name_exists():
    pages = [REPO / "README.md", *(p for p in (REPO / "docs").rglob("*.md") if p.name != "design.md")]
    missing = {
        str(page.relative_to(REPO)): gone
        for page in pages
        if (gone := [name for name in named_paths(page) if not (REPO / name).exists()])
    }
    assert missing == {}, "a module moved: point the page at its new path"


def test_the_readme_and_the_overview_send_their_reader_to_every_page_of_the_reference():
    pages = {page.resolve() for page in (REPO / "docs").glob("*.md")}
    for overview in (REPO / "README.md", REPO / "docs" / "index.md"):
        linked = {(overview.parent / unquote(link).partition("#")[0]).resolve() for link in links(overview)}
        assert {str(p.relative_to(REPO)) for p in pages - linked - {overview.resolve()}} == set(), overview.name
