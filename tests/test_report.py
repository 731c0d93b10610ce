"""``imgtool report``: the self-contained HTML page, built from corpus dumps, checked as text and in a real
browser (Debian's headless Chromium driven by selenium; no browser download).

The browser tests skip without /usr/bin/chromium, /usr/bin/chromedriver or selenium, unless
IMGTOOL_REQUIRE_BROWSER=1 (CI), where they fail instead.  Each browser test writes a screenshot of its page
into a temp dir and prints the path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import imgtool
from imgtool.cli.app import main
from imgtool.render.report import report_html
from imgtool.render.report.build import BINS, memory_views

from corpus import CORPUS, SAMPLES

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TWICE = CORPUS / "twice"
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"team corpus not found at {CORPUS}")


def _vma_starts(dump) -> set[str]:
    return {f"{v.start:#x}" for t in dump.tasks if t.mm is not None for v in t.mm.vmas}


# -- the page as text ------------------------------------------------------------------------------------------

@needs_corpus
@pytest.mark.parametrize("name", ["memory", "fds", "tree"])
def test_page_is_self_contained_and_names_every_process_and_vma(name: str) -> None:
    with imgtool.open(CORPUS / name / "images") as dump:
        html = report_html(dump)
        starts, pids = _vma_starts(dump), [t.pid for t in dump.tasks]
    assert not re.search(r"""(src|href|url)\s*[=(]\s*["']?(https?:)?//""", html, re.I), "a reference to elsewhere"
    assert "<link" not in html and "@import" not in html
    assert set(re.findall(r'data-start="(0x[0-9a-f]+)"', html)) >= starts
    for pid in pids:
        assert f'id="pid-{pid}"' in html


def _every_dump() -> list[Path]:
    found = sorted(p.parent for root in (SAMPLES, CORPUS) if root.is_dir() for p in root.glob("*/images*/pstree.img"))
    return [*found, *([CORPUS / "podman" / "checkpoint.tar.gz"] if CORPUS.is_dir() else [])]


@pytest.mark.parametrize("path", _every_dump(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_sample_and_corpus_dump_renders(path: Path) -> None:
    with imgtool.open(path) as dump:
        html = report_html(dump)
        pids = [t.pid for t in dump.tasks]
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert html.count("<details") == html.count("</details>")
    for pid in pids:
        assert f'id="pid-{pid}"' in html


@needs_corpus
def test_header_of_a_podman_archive() -> None:
    with imgtool.open(CORPUS / "podman" / "checkpoint.tar.gz") as dump:
        html = report_html(dump)
    assert "corpus-pod" in html and "localhost/corpus-busybox:latest" in html and "podman" in html
    assert "2026-11-26T17:05:54" in html      # createdTime of config.dump
    assert "image version" in html and "Findings of" in html


@needs_corpus
def test_vma_counts_agree_with_imgtool_maps() -> None:
    from imgtool.cli.commands.inspect import vma_rows

    with imgtool.open(CORPUS / "memory" / "images") as dump:
        for task in dump.tasks:
            rows = {r["start"]: r for r in vma_rows(dump, task)}
            for view in memory_views(dump, task):
                row = rows[view.start]
                assert view.pages == row["pages"]
                assert sum(view.counts.values()) == view.pages
                assert len(view.bins) <= BINS and sum(view.bin_pages) == view.pages
                if view.kind != "shared":     # maps does not count shared objects' pages (their own pagemap)
                    assert view.counts["present"] == row["dumped_pages"].get("present", 0)


@needs_corpus
def test_cli_writes_the_page(tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    assert main(["report", str(TWICE / "images-b"), "--against", str(TWICE / "images-a"), "-o", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    assert "Changes since the older dump" in html and "newfile-gen1.txt" in html
    assert not list(tmp_path.glob("*.imgtool-tmp"))


def test_fragmented_gib_dump_is_small(tmp_path: Path, browser: Browser,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """1 GiB in one-page runs (262,144 pagemap entries): the page stays small, one element per bin at most."""
    from imgtool.testing.synth import generate

    d0 = generate(tmp_path / "fragmented", seed=1, gib=1, fragmented=True, fds=1000, sparse=True)[0]
    out = tmp_path / "fragmented.html"
    began = time.perf_counter()
    assert main(["report", str(d0), "-o", str(out)]) == 0
    took = time.perf_counter() - began
    size = out.stat().st_size
    assert size <= 5 << 20, f"{size} bytes"
    html = out.read_text(encoding="utf-8")
    assert html.count("<rect") < 2000      # bins, never pages or pagemap entries
    page = browser.load(out, "fragmented")   # timings are reported, not asserted (a loaded machine varies 5x)
    with capsys.disabled():
        print(f"\nfragmented 1 GiB: written in {took:.2f} s, {size / 1024:.0f} KiB, "
              f"loaded in {page.load_seconds:.2f} s")
    page.screenshot(capsys)


def test_tree_events_are_balanced_even_with_a_cycle() -> None:
    from imgtool.render.report.build import _tree

    tasks = {1: {"children": [2]}, 2: {"children": [1, 3]}, 3: {"children": []}, 7: {"children": [7]}}
    events = _tree(tasks, [1])
    opened = [pid for event, pid, _ in events if event == "open"]
    assert sorted(opened) == [1, 2, 3, 7]                    # each once; 7 (its own parent) as a root
    depth = 0
    for event, _, _ in events:
        depth += 1 if event == "open" else -1
        assert depth >= 0
    assert depth == 0


def test_fill_steps_show_any_page_and_never_overflow() -> None:
    from imgtool.render.report.svg import STEPS, _steps

    assert _steps([1, 0, 0], 1000) == (1, 0, 0)              # one page of a thousand still shows
    assert sum(_steps([500, 499, 1], 1000)) <= STEPS
    assert _steps([0, 0, 0], 10) == (0, 0, 0)


# -- in a real browser ---------------------------------------------------------------------------------------------

class Browser:
    def __init__(self, driver, shots: Path) -> None:
        self.driver, self.shots = driver, shots

    def load(self, path: Path, label: str, width: int = 1280) -> Page:
        d = self.driver
        d.get_log("browser")
        d.get_log("performance")    # drop what earlier pages logged
        d.set_window_size(width, 1000)
        began = time.perf_counter()
        d.get(path.resolve().as_uri())
        d.execute_script("return document.readyState")
        page = Page(self, path, label, time.perf_counter() - began)
        page.check_clean()
        return page


class Page:
    def __init__(self, browser: Browser, path: Path, label: str, load_seconds: float) -> None:
        self.browser, self.driver, self.path, self.label = browser, browser.driver, path, label
        self.load_seconds = load_seconds

    def check_clean(self) -> None:
        """No console errors, no request for anything but the page itself."""
        errors = [e for e in self.driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
        assert not errors, errors
        urls = []
        for entry in self.driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            if msg["method"] == "Network.requestWillBeSent":
                urls.append(msg["params"]["request"]["url"])
        # chrome:// and chrome-untrusted:// are the browser's own new-tab page, loading when a session begins
        inside = ("data:", "chrome:", "chrome-untrusted:")
        outside = [u for u in urls if u != self.path.resolve().as_uri() and not u.startswith(inside)]
        assert not outside, outside

    def screenshot(self, capsys: pytest.CaptureFixture[str] | None = None) -> Path:
        d = self.driver
        height = d.execute_script("return document.documentElement.scrollHeight")
        width = d.execute_script("return window.innerWidth")
        d.set_window_size(max(width, 360), min(max(height, 600), 8000))
        shot = self.browser.shots / f"{self.label}.png"
        d.save_screenshot(str(shot))
        if capsys is not None:
            with capsys.disabled():
                print(f"\nscreenshot of {self.label}: {shot}")
        return shot


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    required = os.environ.get("IMGTOOL_REQUIRE_BROWSER") == "1"
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        if required:
            raise
        pytest.skip("selenium is not installed")
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        if required:
            pytest.fail("IMGTOOL_REQUIRE_BROWSER=1 but chromium/chromium-driver are not installed")
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="imgtool-chromium-")
    for flag in [*FLAGS, f"--user-data-dir={profile}", "--window-size=1280,1000"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield Browser(driver, tmp_path_factory.mktemp("report-screenshots"))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The reports of the corpus dumps the browser tests open."""
    if not CORPUS.is_dir():
        pytest.skip(f"team corpus not found at {CORPUS}")
    root = tmp_path_factory.mktemp("reports")
    out = {}
    for name in ("memory", "fds", "tree"):
        out[name] = root / f"{name}.html"
        assert main(["report", str(CORPUS / name / "images"), "-o", str(out[name])]) == 0
    out["twice"] = root / "twice.html"
    assert main(["report", str(TWICE / "images-b"), "--against", str(TWICE / "images-a"), "-o",
                 str(out["twice"])]) == 0
    return out


@pytest.mark.parametrize("bad", ['<script>undefinedFunction()</script>',
                                 '<img src="http://127.0.0.1:9/x.png" alt="">'])
def test_browser_checks_catch_errors_and_outside_requests(bad: str, browser: Browser, tmp_path: Path) -> None:
    """The checks the other browser tests rely on do fail on a page with an error or a request elsewhere."""
    path = tmp_path / "bad.html"
    path.write_text(f"<!DOCTYPE html><html><head><title>bad</title></head><body>{bad}</body></html>")
    with pytest.raises(AssertionError):
        browser.load(path, "bad")


@pytest.mark.parametrize("name", ["memory", "fds", "tree"])
def test_browser_shows_every_process_and_vma(name: str, browser: Browser, pages: dict[str, Path],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    page = browser.load(pages[name], name)
    d = browser.driver
    with imgtool.open(CORPUS / name / "images") as dump:
        starts, pids = _vma_starts(dump), {t.pid for t in dump.tasks}
    shown_pids = set(d.execute_script("return [...document.querySelectorAll('details.proc')]"
                                      ".map(e => Number(e.dataset.pid))"))
    assert shown_pids == pids
    shown = set(d.execute_script("return [...document.querySelectorAll('g.vma')].map(g => g.dataset.start)"))
    assert shown >= starts
    d.execute_script("document.getElementById('expand-all').click()")
    text = d.execute_script("return document.body.innerText")
    for start in starts:                        # searchable as text too (the mapping tables)
        assert start in text
    page.check_clean()
    page.screenshot(capsys)


def test_browser_diff_lists_the_known_changes(browser: Browser, pages: dict[str, Path],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    page = browser.load(pages["twice"], "twice-diff")
    d = browser.driver
    diff = d.execute_script("return document.getElementById('diff').innerText")
    assert "task 16387" in diff and "ADDED" in diff.upper()             # the forked child
    assert "newfile-gen1.txt" in diff                                   # the new fd 3
    assert "pos: 380 → 499" in diff                                     # stdout's position moved
    assert "vma 7f00bea00000-7f00bf200000" in diff and "16 changed" in diff   # pages 0..15 of region A
    rows = d.execute_script("return [...document.querySelectorAll('table.heatmap tbody tr')]"
                            ".map(r => [r.dataset.start, r.innerText])")
    a_row = next(text for start, text in rows if start == "0x7f00bea00000")
    assert "16 changed" in a_row
    d.execute_script("document.querySelectorAll('table.heatmap details').forEach(x => x.open = true)")
    ranges = d.execute_script("return document.querySelector('table.heatmap tr[data-start=\"0x7f00bea00000\"]')"
                              ".innerText")
    assert "0x7f00bea00000-0x7f00bea10000" in ranges and "16 pages" in ranges
    page.check_clean()
    page.screenshot(capsys)


def test_browser_expand_a_process_and_read_a_vma(browser: Browser, pages: dict[str, Path],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    page = browser.load(pages["twice"], "twice-vma")
    d = browser.driver
    proc = d.find_element(By.ID, "pid-16315")
    assert proc.get_attribute("open") is None
    proc.find_element(By.TAG_NAME, "summary").click()
    assert proc.get_attribute("open") is not None
    vma = proc.find_element(By.CSS_SELECTOR, 'g.vma[data-start="0x7f00bea00000"]')
    assert vma.is_displayed()
    ActionChains(d).move_to_element(vma).perform()
    tooltip = d.execute_script("return arguments[0].querySelector('title').textContent", vma)
    assert "0x7f00bea00000-0x7f00bf200000" in tooltip and "rw-p" in tooltip
    assert "2048 pages: 2048 dumped here" in tooltip
    vma.click()
    panel = proc.find_element(By.CSS_SELECTOR, ".vma-detail").text
    assert "0x7f00bea00000 – 0x7f00bf200000" in panel and "2048" in panel
    # the address finder opens the process holding an address and marks its mapping
    d.find_element(By.ID, "collapse-all").click()
    d.find_element(By.ID, "addr").send_keys("7f00bea01234\n")
    assert d.find_element(By.ID, "pid-16387").get_attribute("open") is not None
    assert d.execute_script("return document.querySelectorAll('g.vma.found').length") == 2   # parent and child
    page.check_clean()
    page.screenshot(capsys)


def test_browser_marks_the_mappings_a_real_process_changed(browser: Browser, remapped_dumps: tuple,
                                                           tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two real dumps of tests/programs/remap.py: a mapping grew, one was unmapped, one made read-only, one added.
    The map of the newer dump marks the three that are there and lists the one that is gone."""
    from selenium.webdriver.common.by import By

    before, after, addr = remapped_dumps
    out = tmp_path / "remap.html"
    assert main(["report", str(after), "--against", str(before), "-o", str(out)]) == 0
    page = browser.load(out, "remap-diff")
    d = browser.driver
    d.execute_script("document.getElementById('expand-all').click()")
    marked = dict(d.execute_script("return [...document.querySelectorAll('g.vma[data-change]:not([data-change=\"\"])')]"
                                   ".map(g => [g.dataset.start, g.dataset.change])"))
    assert marked == {f"{addr['grow']:#x}": "resized", f"{addr['prot']:#x}": "changed", f"{addr['new']:#x}": "added"}
    grown = d.find_element(By.CSS_SELECTOR, f'g.vma[data-start="{addr["grow"]:#x}"]')
    assert grown.find_element(By.CSS_SELECTOR, "rect.chbar").is_displayed()
    assert "since the older dump: grew at the end by 16 KiB" in grown.find_element(By.TAG_NAME, "title") \
        .get_attribute("textContent")
    grown.click()
    assert "since the older dump\nresized: grew at the end by 16 KiB" in \
        grown.find_element(By.XPATH, "ancestor::details[contains(@class, 'mem')]") \
        .find_element(By.CSS_SELECTOR, ".vma-detail").text
    prot = d.find_element(By.CSS_SELECTOR, f'g.vma[data-start="{addr["prot"]:#x}"]')
    assert prot.get_attribute("data-change-text") == "prot: rw- → r--"
    removed = d.find_element(By.CSS_SELECTOR, ".removed-vmas").text
    assert f"{addr['gone']:#x}-{addr['gone'] + 4 * 4096:#x} rw-" in removed and "removed" in removed.lower()
    unmarked = d.execute_script("return document.querySelectorAll('g.vma[data-change=\"\"]').length")
    assert unmarked > 10                        # the interpreter's other mappings are the same in both dumps
    page.check_clean()
    page.screenshot(capsys)


def test_browser_narrow_window_and_print(browser: Browser, pages: dict[str, Path],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    page = browser.load(pages["memory"], "memory-narrow", width=420)
    d = browser.driver
    d.execute_script("document.getElementById('expand-all').click()")
    overflow = d.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the page is {overflow}px wider than a narrow window"
    page.screenshot(capsys)
    d.execute_script("document.getElementById('collapse-all').click(); window.dispatchEvent(new Event('beforeprint'))")
    assert d.execute_script("return [...document.querySelectorAll('details')].every(x => x.open)")
    d.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    try:
        assert d.execute_script("return getComputedStyle(document.querySelector('.tools')).display") == "none"
    finally:
        d.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
    pdf = d.execute_cdp_cmd("Page.printToPDF", {})
    assert len(pdf["data"]) > 1000
    page.check_clean()
