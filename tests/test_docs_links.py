"""Every relative link and anchor in README.md and docs/ resolves, and every docs page is linked
from the README.

Links are Markdown links and images (`[text](target)`, `![alt](target)`), reference definitions
(`[label]: target`) and HTML `href`/`src` attributes, outside fenced code blocks and inline code.
Targets with a scheme (`https:`, `mailto:`, ...) or starting with `//` are external and not
checked. A relative target must exist, relative to the linking file (or to the repository root
when it starts with `/`, as on GitHub); a `#anchor` into a Markdown file (or the same file) must
match one of its headings as GitHub names them: lowercased, punctuation other than `-` and `_`
dropped, each space a `-`, and a repeated heading suffixed `-1`, `-2`, ... (explicit
`<a name>`/`id` anchors count too). No network, no project imports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent

_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
# `](target)` or `](target "title")`; the text before it may span lines, the target cannot.
_INLINE = re.compile(
    r"\]\(\s*(<[^>\n]*>|[^)\s]*)(?:\s+(?:\"[^\"\n]*\"|'[^'\n]*'|\([^)\n]*\)))?\s*\)"
)
_REFDEF = re.compile(r"^ {0,3}\[[^\]\n]+\]:[ \t]*(<[^>\n]*>|\S+)")
_HTML_ATTR = re.compile(r"<[a-zA-Z][^>]*?\b(?:href|src)\s*=\s*[\"']([^\"']*)[\"']")
_HTML_ANCHOR = re.compile(r"<a\b[^>]*?\b(?:name|id)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
_EXTERNAL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//)")
_NOT_SLUG = re.compile(r"[^\w\- ]", re.UNICODE)
_BLANK_LINE = re.compile(r"\n[ \t]*\n")


@dataclass(frozen=True)
class Link:
    file: Path
    line: int
    target: str

    def where(self, root: Path) -> str:
        return f"{self.file.relative_to(root)}:{self.line}: ({self.target})"


def _blank_fences(lines: list[str]) -> list[str]:
    """The lines with fenced code blocks (fences included) blanked; line numbers stay put."""
    out: list[str] = []
    fence: str | None = None
    for line in lines:
        match = _FENCE.match(line)
        if fence is None:
            if match:
                fence = match.group(1)
                out.append("")
                continue
            out.append(line)
        else:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                if not line.strip().strip(fence[0]):
                    fence = None
            out.append("")
    return out


def _blank_code_spans(text: str) -> str:
    """Inline code spans blanked (newlines kept): a run of n backticks up to the next run of
    exactly n backticks within the same paragraph; an unmatched run is literal text."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] != "`":
            out.append(text[i])
            i += 1
            continue
        j = i
        while j < len(text) and text[j] == "`":
            j += 1
        run = j - i
        end = None
        k = j
        while k < len(text):
            if text[k] == "`":
                m = k
                while m < len(text) and text[m] == "`":
                    m += 1
                if m - k == run:
                    end = m
                    break
                k = m
            elif _BLANK_LINE.match(text, k):
                break
            else:
                k += 1
        if end is None:
            out.append(text[i:j])
            i = j
        else:
            out.append("".join(c if c == "\n" else " " for c in text[i:end]))
            i = end
    return "".join(out)


def prose(path: Path) -> list[str]:
    """The file's lines with code (fenced blocks, inline spans) blanked."""
    lines = _blank_fences(path.read_text(encoding="utf-8").splitlines())
    return _blank_code_spans("\n".join(lines)).split("\n")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's Markdown text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("`", "").replace("*", "")
    text = _NOT_SLUG.sub("", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a Markdown file defines: its headings' (with -1, -2 for repeats) and
    explicit `<a name>`/`id` ones."""
    lines = _blank_fences(path.read_text(encoding="utf-8").splitlines())
    seen: dict[str, int] = {}
    found: set[str] = set()
    for i, line in enumerate(lines):
        heading = None
        match = _ATX.match(line)
        if match:
            heading = match.group(2) or ""
        elif _SETEXT.match(line) and i > 0 and lines[i - 1].strip():
            previous = lines[i - 1]
            if not re.match(r"^\s*([-*+]|\d+[.)])\s|^\s*\|", previous) and not _ATX.match(previous):
                heading = previous.strip()
        if heading is not None:
            base = slug(heading)
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
        found.update(_HTML_ANCHOR.findall(line))
    return found


def links(path: Path) -> list[Link]:
    found: list[Link] = []
    for number, line in enumerate(prose(path), start=1):
        targets = [m.group(1) for m in _INLINE.finditer(line)]
        targets += [m.group(1) for m in _REFDEF.finditer(line)]
        targets += [m.group(1) for m in _HTML_ATTR.finditer(line)]
        for target in targets:
            if target.startswith("<") and target.endswith(">"):
                target = target[1:-1]
            found.append(Link(path, number, target))
    return found


def markdown_files(root: Path) -> list[Path]:
    files = [root / "README.md"] if (root / "README.md").is_file() else []
    return files + sorted((root / "docs").rglob("*.md"))


def broken_links(root: Path) -> list[str]:
    """One line per relative link that does not resolve, as `file:line: (target): why`."""
    problems: list[str] = []
    anchor_cache: dict[Path, set[str]] = {}
    for path in markdown_files(root):
        for link in links(path):
            target = link.target.strip()
            if not target or _EXTERNAL.match(target):
                if not target:
                    problems.append(f"{link.where(root)}: empty link target")
                continue
            file_part, _, anchor = target.partition("#")
            file_part = unquote(file_part.split("?", 1)[0])
            if not file_part:
                dest = path
            elif file_part.startswith("/"):
                dest = (root / file_part.lstrip("/")).resolve()
            else:
                dest = (path.parent / file_part).resolve()
            if not dest.exists():
                problems.append(f"{link.where(root)}: no such file {_show(dest, root)}")
                continue
            if not anchor or dest.suffix.lower() != ".md" or dest.is_dir():
                continue
            if dest not in anchor_cache:
                anchor_cache[dest] = anchors(dest)
            if unquote(anchor) not in anchor_cache[dest]:
                problems.append(
                    f"{link.where(root)}: no heading gives #{anchor} in {_show(dest, root)}"
                )
    return problems


def unlinked_pages(root: Path) -> list[str]:
    """docs pages that README.md does not link to."""
    readme = root / "README.md"
    linked = set()
    for link in links(readme):
        file_part = unquote(link.target.partition("#")[0].split("?", 1)[0])
        if file_part and not _EXTERNAL.match(file_part):
            linked.add((readme.parent / file_part.lstrip("/")).resolve())
    return [
        str(page.relative_to(root))
        for page in sorted((root / "docs").rglob("*.md"))
        if page.resolve() not in linked
    ]


def _show(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def test_every_relative_link_and_anchor_resolves() -> None:
    problems = broken_links(ROOT)
    assert not problems, f"{len(problems)} broken link(s):\n" + "\n".join(problems)


def test_every_docs_page_is_linked_from_the_readme() -> None:
    missing = unlinked_pages(ROOT)
    assert not missing, "docs pages not linked from README.md:\n" + "\n".join(missing)


def test_the_check_sees_the_readmes_links() -> None:
    """A guard against a checker that silently finds nothing."""
    targets = [link.target for link in links(ROOT / "README.md")]
    assert any(target.startswith("docs/") for target in targets), targets


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        (
            "Running in production: readiness, drain, metrics, logs",
            "running-in-production-readiness-drain-metrics-logs",
        ),
        ("MCP tools (remote MCP servers)", "mcp-tools-remote-mcp-servers"),
        ("6. Licences", "6-licences"),
        ("The `REALTALK_*` settings", "the-realtalk_-settings"),
        ("Who may call what: the security model", "who-may-call-what-the-security-model"),
        ("[Linked](x.md) *and* **bold**", "linked-and-bold"),
        ("Ünïcode — dash", "ünïcode--dash"),
    ],
)
def test_slug_follows_githubs_rules(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_broken_links_are_reported_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(
        "# Top\n\n## Same\n\n## Same\n\n"
        "[ok](docs/a.md) [ok](#same-1) [ok](docs/a.md#part) [ok](https://example.com/x)\n"
        "[gone](docs/missing.md) [bad anchor](docs/a.md#nope)\n"
        "`[in code](nowhere.md)`\n\n```\n[in a fence](nowhere.md)\n```\n"
        "[ref]: docs/also-missing.md\n"
        "![img](docs/pic.png) [self](#same-2)\n"
    )
    (tmp_path / "docs" / "a.md").write_text("# A\n\n## Part\n\n[back](../README.md#top)\n")
    (tmp_path / "docs" / "b.md").write_text("# B, linked from nowhere\n")
    problems = broken_links(tmp_path)
    assert problems == [
        "README.md:8: (docs/missing.md): no such file docs/missing.md",
        "README.md:8: (docs/a.md#nope): no heading gives #nope in docs/a.md",
        "README.md:14: (docs/also-missing.md): no such file docs/also-missing.md",
        "README.md:15: (docs/pic.png): no such file docs/pic.png",
        "README.md:15: (#same-2): no heading gives #same-2 in README.md",
    ]
    assert unlinked_pages(tmp_path) == ["docs/b.md"]
