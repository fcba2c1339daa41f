"""Every relative link and every ``#anchor`` in README.md and docs/*.md resolves: the file (or folder) is
there, and the anchor is a heading of the page it points to, by GitHub's slug rules (lowercase; every
character but letters, digits, ``-``, ``_`` and spaces dropped, backticks and em dashes included;
spaces to ``-``; a repeated slug gets ``-1``, ``-2``, ...). Links inside code are not links."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# pages other branches are writing: a link to one passes while it is absent, and is checked once it exists
PENDING = {"docs/reliability-round3.md", "docs/serving-triton.md", "docs/serving-oip-and-signing.md",
           "docs/device-true.md"}

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text (before de-duplication)."""
    text = _CODE_SPAN.sub(lambda m: m.group(2), heading).lower()
    text = re.sub(r"[^\w\- ]", "", text)  # \w: letters, digits and _ in any script
    return text.replace(" ", "-")


def prose_lines(text: str):
    """(line number, line) of the lines outside fenced code blocks."""
    fence = None
    for number, line in enumerate(text.split("\n"), 1):
        m = _FENCE.match(line)
        if m:
            fence = None if fence == m.group(1) else (fence or m.group(1))
            continue
        if fence is None:
            yield number, line


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose_lines(text):
        m = _HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        out.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return out


def links(text: str):
    """(line number, target) of every inline link, image and reference definition outside code."""
    for number, line in prose_lines(text):
        m = _REF_DEF.match(line)
        if m:
            yield number, m.group(1)
            continue
        for link in _LINK.finditer(_CODE_SPAN.sub("", line)):
            yield number, link.group(1)


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """What does not resolve in ``page``: ``"README.md:12: docs/x.md#y (no heading 'y' in docs/x.md)"``."""
    problems = []
    for number, target in links(page.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("//"):
            continue  # http(s), mailto: not checked here
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        where = f"{page.relative_to(root)}:{number}: {target}"
        if path and not dest.exists():
            rel = dest.relative_to(root).as_posix() if dest.is_relative_to(root) else str(dest)
            if rel not in PENDING:
                problems.append(f"{where} (no such file)")
            continue
        if anchor:
            if dest.is_dir() or dest.suffix.lower() != ".md":
                problems.append(f"{where} (an anchor into a file that is not Markdown)")
            elif anchor not in anchors(dest.read_text(encoding="utf-8")):
                problems.append(f"{where} (no heading '{anchor}' in {dest.relative_to(root)})")
    return problems


def pages(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_and_anchor_resolves(page):
    assert broken_links(page) == []


def test_the_readme_links_to_every_page_of_the_docs():
    readme = {target.partition("#")[0] for _, target in links((ROOT / "README.md").read_text(encoding="utf-8"))}
    assert {p.relative_to(ROOT).as_posix() for p in pages()[1:]} <= readme


def test_github_slugs():
    assert slug("`kdtool score` — the official SQuAD metric") == "kdtool-score--the-official-squad-metric"
    assert slug("Quantization-aware training (`--qat` and `--precision int8-qat`)") == \
        "quantization-aware-training---qat-and---precision-int8-qat"
    assert slug("Signed bundles: `kdtool keygen`, `export --sign-key`") == "signed-bundles-kdtool-keygen-export---sign-key"
    assert slug("Ünïcode stays_put 2.0") == "ünïcode-stays_put-20"
    assert anchors("# A\n\n## A\n```\n# A\n```\n### A!\n") == {"a", "a-1", "a-2"}


def test_a_broken_link_or_anchor_is_reported(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "there.md").write_text("# Here — it is\n\n## Here — it is\n", encoding="utf-8")
    page = tmp_path / "README.md"
    page.write_text("[ok](docs/there.md#here--it-is) [dup](docs/there.md#here--it-is-1) [self](#top)\n"
                    "# Top\n"
                    "[gone](docs/gone.md) [bad anchor](docs/there.md#nowhere) [bad self](#bottom)\n"
                    "`[in code](docs/gone.md)` [pending](docs/serving-triton.md) [web](https://example.com/x)\n"
                    "```\n[fenced](docs/gone.md)\n```\n"
                    "[ref]: docs/missing.md\n", encoding="utf-8")
    assert broken_links(page, tmp_path) == [
        "README.md:3: docs/gone.md (no such file)",
        "README.md:3: docs/there.md#nowhere (no heading 'nowhere' in docs/there.md)",
        "README.md:3: #bottom (no heading 'bottom' in README.md)",
        "README.md:8: docs/missing.md (no such file)",
    ]


def test_the_readme_has_a_row_for_every_command():
    from kdtool.cli import COMMANDS

    rows = {m.group(1) for m in re.finditer(r"^\| `kdtool ([a-z-]+)` \|", (ROOT / "README.md").read_text(encoding="utf-8"),
                                            re.M)}
    assert set(COMMANDS) <= rows
