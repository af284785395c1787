"""report.html: self-contained, every failure and plot of a failing third-party port shown, port
text escaped, and what headless Chromium renders of it (network off) holds the verdict and rows."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conformance import report, report_html
from conformance.cli import main
from conformance.results import Failure, PortOutput, PortResult, ScenarioResult


class _Tags(HTMLParser):
    """The tags and attributes of a page, as a browser's parser sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.names.add(tag)
        self.attrs += attrs


_EVIL = '<script>alert("x")</script><img src=http://evil.example/x.png onerror=alert(1)>'


def _evil_result() -> PortResult:
    return PortResult(
        name=f"evil{_EVIL}", algorithm="adam", dtype="float32", device="cpu", verdict="fail",
        message=f"raised {_EVIL}",
        scenarios=[ScenarioResult("normal", "fail", reason=_EVIL),
                   ScenarioResult("maximize", "not_judged", reason=f"why {_EVIL}")],
        failures=[Failure("normal", "resync", 3, "m", "exception", f"boom {_EVIL}", array=0,
                          index=(1, 2), ulps=7.0, budget_fraction=2.5)],
        output=PortOutput(12, f"printed {_EVIL}"),
        likely_causes=[(f"cause{_EVIL}", 0.1, f"explained {_EVIL}")],
    )  # fmt: skip


def test_port_text_with_html_and_script_is_escaped() -> None:
    r = _evil_result()
    rep = report.build([r], options={}, notes=[f"note {_EVIL}"], complete=True, duration_s=1.0)
    page = report_html.render(rep, [r])
    assert "<script" not in page.lower() and "<img" not in page.lower()
    assert "&lt;script&gt;" in page and "onerror" in page  # shown as text, not dropped
    # nothing to fetch: the page's own tags carry no URL but data: images, and no handlers
    tags = _Tags()
    tags.feed(page)
    assert "script" not in tags.names and "link" not in tags.names
    for name, value in tags.attrs:
        assert not name.startswith("on"), name
        if name in ("src", "href"):
            assert (value or "").startswith("data:image/png;base64,"), value
    assert "Content-Security-Policy" in page
    # the failure row: scenario, mode, step, stage, coordinate, budget fraction, ulps
    row = re.search(r"<tr><td>normal</td><td>resync</td>.*?</tr>", page)
    assert row and all(x in row.group() for x in (">3<", ">m<", "array 0 [1, 2]", ">2.5<", ">7<"))
    assert "maximize" in page and "why &lt;script&gt;" in page  # not-judged with its reason


@pytest.fixture(scope="module")
def failing_check(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A failing third-party port: torch's AdamW checked as if its weight decay were l2."""
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("html") / "report"
    code = main(["check", "torch.optim:AdamW", "--framework", "torch", "--algorithm", "adam",
                 "--weight-decay-mode", "l2", "--quick", "--no-progress", "--scenario",
                 "weight_decay_l2", "--report", str(out)])  # fmt: skip
    assert code == 1
    return out


def test_report_html_of_a_failing_port_shows_every_failure_and_plot(failing_check: Path) -> None:
    page = (failing_check / "report.html").read_text()
    rep = json.loads((failing_check / "report.json").read_text())
    failures = [f for p in rep["ports"] for f in p["failures"]]
    assert failures and rep["verdict"] == "not conformant"
    assert "VERDICT: <b>not conformant</b>" in page
    for f in failures:
        assert (
            f'<tr><td>{f["scenario"]}</td><td>{f["mode"]}</td><td class="num">{f["step"]}<' in page
        )
    pngs = list((failing_check / "plots").glob("*.png"))
    assert pngs and page.count('src="data:image/png;base64,') == len(pngs)
    causes = rep["ports"][0]["likely_causes"]
    assert causes and all(report_html.esc(c["description"]) in page for c in causes)


def test_headless_chromium_renders_verdict_and_failure_rows(
    failing_check: Path, tmp_path: Path
) -> None:
    browser = next((b for b in ("chromium", "chromium-browser", "google-chrome")
                    if shutil.which(b)), None)  # fmt: skip
    if browser is None:
        pytest.skip("no chromium on PATH (CI=true bash .ci/setup installs it, as root)")
    isolate = ["unshare", "--net"] if subprocess.run(
        ["unshare", "--net", "true"], capture_output=True).returncode == 0 else []  # fmt: skip
    cmd = [*isolate, browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-extensions", "--disable-background-networking", "--disable-sync",
           "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={tmp_path / 'profile'}",
           "--dump-dom", (failing_check / "report.html").resolve().as_uri()]  # fmt: skip
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    rep = json.loads((failing_check / "report.json").read_text())
    assert re.search(r'id="verdict"[^>]*>VERDICT: <b>not conformant</b>', dom)
    rows = re.findall(r"<tr><td>weight_decay_l2</td><td>(?:resync|free)</td>", dom)
    assert len(rows) == sum(len(p["failures"]) for p in rep["ports"]) > 0
    assert "data:image/png;base64," in dom
