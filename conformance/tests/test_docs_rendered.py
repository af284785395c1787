"""The documentation site shows its mathematics with nothing fetched when a page is read.

Builds the site (strict, as CI does) into a temporary directory and checks every page: no TeX
delimiter in its text, one MathML element per formula that arithmatex found, and no script,
stylesheet, image or CSS import from another host.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[docs]')")

from mkdocs.commands.build import build
from mkdocs.config import load_config
from mkdocs.plugins import BasePlugin, event_priority

CONFIG = Path(__file__).resolve().parents[2] / "docs" / "mkdocs.yml"

TEX = re.compile(r"\\\(|\\\[|\$\$|\\begin\{")
# Text a reader sees verbatim (code) or never (script, style).
VERBATIM = {"code", "pre", "script", "style", "textarea"}
# A URL with a host: http(s) or protocol-relative; a file of the site itself has none.
EXTERNAL = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:)?//", re.I)
CSS_REFERENCE = re.compile(r"""@import\s+(?:url\()?\s*['"]?([^'")\s;]+)|url\(\s*['"]?([^'")\s]+)""")
# <link rel=...> values whose href the browser does not load.
NOT_LOADED = {"canonical", "alternate", "author", "license", "next", "prev", "search"}


class FormulaCounter(BasePlugin):  # type: ignore[type-arg]
    """Counts arithmatex's formulas per page before anything converts them."""

    def __init__(self) -> None:
        super().__init__()
        self.per_page: dict[str, int] = {}

    # First, ahead of any hook or plugin that may turn the formulas into something else.
    @event_priority(100)
    def on_page_content(self, html: str, page: Any, **kwargs: Any) -> str:
        parser = PageParser()
        parser.feed(html)
        self.per_page[page.file.dest_uri] = parser.arithmatex
        return html


class PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.verbatim = 0
        self.in_style = False
        self.article_depth = 0
        self.text: list[str] = []
        self.arithmatex = 0
        self.math_in_article = 0
        self.references: list[tuple[str, str]] = []  # (what, URL) the browser loads
        self.css: list[str] = []  # <style> blocks and style="" attributes

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "arithmatex" in a.get("class", "").split():
            self.arithmatex += 1
        if tag == "article":
            self.article_depth += 1
        # The table of contents repeats the formulas of the headings: count those of the page
        # body (Material's <article>) only.
        if tag == "math" and self.article_depth:
            self.math_in_article += 1
        if tag in ("script", "img", "iframe", "source", "audio", "video", "embed") and a.get("src"):
            self.references.append((f"<{tag} src>", a["src"]))
        if tag == "link" and a.get("href"):
            rels = set(a.get("rel", "").lower().split())
            if not rels <= NOT_LOADED:
                self.references.append((f"<link rel={a.get('rel')} href>", a["href"]))
        if "style" in a:
            self.css.append(a["style"])
        if tag == "style":
            self.in_style = True
        if tag in VERBATIM:
            self.verbatim += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in VERBATIM and self.verbatim:
            self.verbatim -= 1
        if tag == "article" and self.article_depth:
            self.article_depth -= 1
        if tag == "style":
            self.in_style = False

    def handle_data(self, data: str) -> None:
        if self.in_style:
            self.css.append(data)
        if not self.verbatim:
            self.text.append(data)


def external_css_urls(css: str) -> list[str]:
    return [u for m in CSS_REFERENCE.finditer(css) for u in m.groups() if u and EXTERNAL.search(u)]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, int]]]:
    site_dir = tmp_path_factory.mktemp("site")
    config = load_config(config_file=str(CONFIG), site_dir=str(site_dir), strict=True)
    counter = FormulaCounter()
    config.plugins["test-formula-counter"] = counter
    # What `mkdocs build` does around the build itself.
    config.plugins.on_startup(command="build", dirty=False)
    try:
        build(config)
    finally:
        config.plugins.on_shutdown()
    yield site_dir, counter.per_page


def pages(site_dir: Path) -> list[Path]:
    found = sorted(site_dir.rglob("*.html"))
    assert len(found) >= 10, f"only {len(found)} pages built in {site_dir}"
    return found


def parse(path: Path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser


def test_no_raw_tex_outside_code(site: tuple[Path, dict[str, int]]) -> None:
    site_dir, _ = site
    raw = {}
    for path in pages(site_dir):
        hits = [t.strip()[:80] for t in parse(path).text if TEX.search(t)]
        if hits:
            raw[str(path.relative_to(site_dir))] = hits[:3]
    assert not raw, f"raw TeX in the text of {len(raw)} page(s): {raw}"


def test_every_formula_became_mathml(site: tuple[Path, dict[str, int]]) -> None:
    site_dir, per_page = site
    assert sum(per_page.values()) > 1000, f"arithmatex found too few formulas: {per_page}"
    wrong = {}
    for dest, formulas in per_page.items():
        math = parse(site_dir / dest).math_in_article
        if math != formulas:
            wrong[dest] = f"{math} <math> for {formulas} formulas"
    assert not wrong, f"pages whose formulas did not all become MathML: {wrong}"


def test_nothing_fetched_from_elsewhere(site: tuple[Path, dict[str, int]]) -> None:
    site_dir, _ = site
    external = {}
    for path in pages(site_dir):
        parser = parse(path)
        found = [f"{what} {url}" for what, url in parser.references if EXTERNAL.search(url)]
        found += external_css_urls("\n".join(parser.css))
        if found:
            external[str(path.relative_to(site_dir))] = found
    for path in sorted(site_dir.rglob("*.css")):
        found = external_css_urls(path.read_text(encoding="utf-8"))
        if found:
            external[str(path.relative_to(site_dir))] = found
    assert not external, f"read-time requests to other hosts: {external}"
