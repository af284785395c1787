r"""MkDocs hook: the site's TeX becomes MathML Core while ``mkdocs build`` runs.

The site is read offline (air-gapped clusters, laptops), so a page must show its mathematics
without fetching a renderer. ``pymdownx.arithmatex`` (generic mode) leaves each formula as
``<span class="arithmatex">\(...\)</span>`` or ``<div class="arithmatex">\[...\]</div>``; this hook
replaces the TeX inside with the MathML Core that ``math_core`` writes, which current browsers lay
out natively. The wrappers stay, so that Material's ``div.arithmatex`` rule still scrolls a wide
displayed formula instead of letting it overflow the page.

Nothing is shipped as raw TeX: a formula that ``math_core`` rejects (it rejects unknown commands
instead of passing them through), and any TeX delimiter still in a page's text after the
conversion (a ``$$`` that arithmatex did not take as math, say), is logged with its page and fails
the build.

Also a command, for ``docs/scripts/check_rendered.sh``: ``python docs/hooks/mathml.py FILE...``
checks saved HTML files (the DOM that headless Chromium dumps): each must hold MathML and no raw
TeX in its text; exits 1 otherwise.
"""

from __future__ import annotations

import html
import logging
import re
import sys
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path

from math_core import LatexError, LatexToMathML
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

# Under "mkdocs." so that the build's own handler counts these lines too.
log = logging.getLogger("mkdocs.hooks.mathml")

# arithmatex escapes the TeX it wraps (&lt;, &amp;), so the content of a wrapper never holds a
# "<": [^<]* cannot run into the next element. Only arithmatex writes this class; matching its
# output here leaves every other byte of the page as the other extensions wrote it, which
# re-serialising the whole page through an HTML parser would not.
_ARITHMATEX = re.compile(
    r'<(?P<tag>span|div)(?P<attrs>[^>]*\bclass="arithmatex"[^>]*)>(?P<tex>[^<]*)</(?P=tag)>'
)
_DELIMITERS = {"span": (r"\(", r"\)"), "div": (r"\[", r"\]")}

# What a reader would see as raw TeX: arithmatex's delimiters, the Markdown ones it did not
# take, and an environment. Single "$" is left out: prose uses it (shell variables).
RAW_TEX = re.compile(r"\\\(|\\\[|\$\$|\\begin\{")

# Text inside these is shown as written (code) or never shown (script, style).
_VERBATIM = frozenset({"code", "pre", "script", "style", "textarea", "kbd", "samp"})

# math_core reads the optional spacing of a row break, `\\[2pt]`, as the text "[2pt]" at the
# start of the next row and reports nothing; refuse it rather than ship the stray text.
_ROW_SPACING = re.compile(r"\\\\\s*\[\s*[-+]?[\d.]+\s*(?:pt|em|ex|mm|cm|in|bp|pc|dd|mu)\s*\]")

# Material's div.arithmatex {overflow: auto} scrolls a wide displayed formula sideways; but the
# glyphs of a displayed <math> reach a few pixels below its box in common fonts, which would put
# a vertical scroll bar beside almost every one. Padding gives that overshoot room to show.
_CSS_URI = "assets/stylesheets/mathml.css"
_CSS = """/* Written by docs/hooks/mathml.py. */
.md-typeset div.arithmatex {
  overflow-x: auto;
  overflow-y: hidden;
  padding-block: 0.3em;
}
"""

# fancy_error=False: plain one-line messages, no ANSI colours in CI logs.
_CONVERTER = LatexToMathML(fancy_error=False)

_failures: list[str] = []


class _TextScanner(HTMLParser):
    """Collects the text nodes of a page that a reader sees as prose or mathematics."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.verbatim_depth = 0
        self.texts: list[str] = []
        self.math_elements = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VERBATIM:
            self.verbatim_depth += 1
        elif tag == "math":
            self.math_elements += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _VERBATIM and self.verbatim_depth:
            self.verbatim_depth -= 1

    def handle_data(self, data: str) -> None:
        if not self.verbatim_depth:
            self.texts.append(data)


def _scan(page_html: str) -> _TextScanner:
    scanner = _TextScanner()
    scanner.feed(page_html)
    scanner.close()
    return scanner


def raw_tex(page_html: str) -> list[str]:
    """Excerpts of the text of ``page_html`` (outside code) that hold a TeX delimiter."""
    found = []
    for text in _scan(page_html).texts:
        m = RAW_TEX.search(text)
        if m:
            found.append(" ".join(text[max(0, m.start() - 30) : m.end() + 50].split()))
    return found


def to_mathml(page_html: str, where: str) -> tuple[str, list[str]]:
    """``page_html`` with each arithmatex formula as MathML, and the formulas that failed."""
    failures: list[str] = []

    def convert(m: re.Match[str]) -> str:
        tag = m["tag"]
        opening, closing = _DELIMITERS[tag]
        tex = html.unescape(m["tex"]).strip()
        if not (tex.startswith(opening) and tex.endswith(closing)):
            failures.append(f"{where}: not arithmatex's generic output: {tex!r}")
            return m[0]
        body = tex[len(opening) : -len(closing)]
        spacing = _ROW_SPACING.search(body)
        if spacing:
            failures.append(
                f"{where}: row spacing {spacing[0]} is not supported by math-core (drop the "
                f"[...]) in formula {body.strip()!r}"
            )
            return m[0]
        try:
            mathml = _CONVERTER.convert_with_local_state(body, displaystyle=tag == "div")
        except LatexError as exc:
            # math-core's message starts with the offset of the error in the formula.
            message = re.sub(r"^(\d+): (.*)", r"\2 (at character \1)", " ".join(str(exc).split()))
            failures.append(f"{where}: {message} in formula {body.strip()!r}")
            return m[0]
        return f"<{tag}{m['attrs']}>{mathml}</{tag}>"

    return _ARITHMATEX.sub(convert, page_html), failures


def on_config(config: MkDocsConfig) -> None:
    if _CSS_URI not in config.extra_css:
        config.extra_css.append(_CSS_URI)


def on_files(files: Files, config: MkDocsConfig) -> Files:
    files.append(File.generated(config, _CSS_URI, content=_CSS))
    return files


def on_pre_build(config: MkDocsConfig) -> None:
    # `mkdocs serve` runs the hooks again on each rebuild.
    _failures.clear()


# Early: Material's typeset plugin (priority 0) copies each heading's HTML into the table of
# contents, which should then hold MathML, not TeX.
@event_priority(50)
def on_page_content(html: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    where = page.file.src_uri
    converted, failures = to_mathml(html, where)
    # A formula that failed above is still TeX in its wrapper: drop it from the scan, which
    # would report it a second time.
    unreported = _ARITHMATEX.sub("", converted)
    failures += [f"{where}: raw TeX left in the text: {t!r}" for t in raw_tex(unreported)]
    for failure in failures:
        log.error(failure)
    _failures.extend(failures)
    return converted


def on_post_build(config: MkDocsConfig) -> None:
    if _failures:
        raise PluginError(
            f"{len(_failures)} formula(s) left as raw TeX (listed above): rewrite each in TeX "
            "that math-core converts, or as a formula that arithmatex recognises"
        )


def main(argv: Sequence[str]) -> int:
    """Check saved pages of the site: each must hold MathML and no raw TeX. 0 if all do, else 1."""
    bad = 0
    for arg in argv:
        path = Path(arg)
        scanner = _scan(path.read_text(encoding="utf-8"))
        excerpts = [t for t in scanner.texts if RAW_TEX.search(t)]
        for excerpt in excerpts:
            print(f"{path}: raw TeX: {' '.join(excerpt.split())[:120]!r}")
        if not scanner.math_elements:
            print(f"{path}: no <math> element: the formulas were not rendered")
        ok = not excerpts and scanner.math_elements > 0
        bad += 0 if ok else 1
        print(f"{path}: {'ok' if ok else 'FAIL'} ({scanner.math_elements} <math>, {len(excerpts)} raw TeX)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
