"""Check the built site in a real browser (headless Chromium), offline.

For the index, a notebook page of the gallery and the pages with the most mathematics:

* load the page with every network request to another host refused (``--host-resolver-rules``), let
  its JavaScript run (``--virtual-time-budget``), and read the resulting DOM (``--dump-dom``);
* math rendered: every ``math`` element of Sphinx/myst-nb holds a MathJax CommonHTML rendering
  (``mjx-chtml``), and no formula failed (``mjx-merror``, "Math Processing Error");
* no console errors: Chromium's console messages (``--enable-logging=stderr --v=0``) and failed
  resource loads (``net::ERR_…``) are errors;
* a screenshot (1200 × 1600) of each page in ``SITE/_screenshots/``, checked to be neither blank nor
  missing; look at them.

Also: no page of the site refers to a script, stylesheet or font on another host (offline site).

Usage: ``python docs/browser_check.py [SITE_DIR]`` (default ``docs/_build/html``); exit 1 on a problem.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-extensions", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--metrics-recording-only", "--no-default-browser-check",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--allow-file-access-from-files",
         "--virtual-time-budget=20000", "--run-all-compositor-stages-before-draw"]
MATH = re.compile(r'<(?:span|div) class="math[ "]')
RENDERED = re.compile(r'class="mjx-chtml MathJax_CHTML')
FAILED = re.compile(r'class="(?:[^"]* )?(?:mjx-merror|mjx-noError|noError|MathJax_Error)[ "]|Math Processing Error'
                    r'|<span class="mjx-mtext"[^>]*style="[^"]*color: red')
PROCESSED = re.compile(r'<script type="math/tex')
DELIMITER = re.compile(r"\\\(|\\\[|\$\$|\\begin\{")
CONSOLE = re.compile(r":(?:INFO|WARNING|ERROR):CONSOLE\(\d+\)\]\s*(.*)")
NET_ERROR = re.compile(r"net::ERR_[A-Z_]+")
EXTERNAL = re.compile(r'<(?:script|link|img)[^>]+(?:src|href)="(https?:)?//', re.I)


def browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    sys.exit("browser_check: no Chromium found (Debian: apt-get install chromium)")


def run(exe: str, page: Path, *extra: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="jbp-chromium-") as profile:
        return subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
                              capture_output=True, text=True, timeout=180)


class _VisibleText(HTMLParser):
    """The text a reader sees: outside ``script``, ``style``, ``pre``, ``code`` and ``textarea``."""

    SKIP = {"script", "style", "pre", "code", "textarea"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.depth, self.parts = 0, []

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.depth += 1

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if not self.depth:
            self.parts.append(data)


def raw_tex_left(dom: str) -> list[str]:
    """TeX delimiters still visible after MathJax ran (math it did not process)."""
    p = _VisibleText()
    p.feed(dom)
    text = "".join(p.parts)
    return [text[max(0, m.start() - 40):m.end() + 40].replace("\n", " ") for m in DELIMITER.finditer(text)]


def nonblank(png: Path) -> float:
    """Fraction of pixels that are not (near) white; -1 when Pillow is not installed."""
    try:
        from PIL import Image
    except ImportError:
        return -1.0
    with Image.open(png) as im:
        g = im.convert("L")
        hist = g.histogram()
        return sum(hist[:240]) / max(1, sum(hist))


def check_page(exe: str, site: Path, page: Path, shots: Path) -> list[str]:
    problems = []
    rel = page.relative_to(site)
    r = run(exe, page, "--dump-dom", "--enable-logging=stderr", "--v=0")
    dom = r.stdout
    if r.returncode != 0 or "</html>" not in dom:
        return [f"{rel}: chromium failed (exit {r.returncode}): {r.stderr.strip()[-300:]}"]
    n_math, n_rendered = len(MATH.findall(dom)), len(RENDERED.findall(dom))
    if n_rendered < n_math:
        problems.append(f"{rel}: {n_math} math elements, only {n_rendered} rendered by MathJax")
    if FAILED.search(dom):
        problems.append(f"{rel}: a formula failed to render: {FAILED.search(dom).group(0)}")
    n_processed = len(PROCESSED.findall(dom))
    if n_processed != n_rendered:
        problems.append(f"{rel}: {n_processed} formulas processed by MathJax, {n_rendered} rendered")
    for left in raw_tex_left(dom)[:3]:
        problems.append(f"{rel}: TeX left unrendered: ...{left}...")
    for line in r.stderr.splitlines():
        m = CONSOLE.search(line)
        if m:
            problems.append(f"{rel}: console: {m.group(1)[:300]}")
        elif NET_ERROR.search(line):
            problems.append(f"{rel}: resource failed: {line.strip()[:300]}")
    png = shots / (str(rel).replace("/", "__").removesuffix(".html") + ".png")
    r = run(exe, page, f"--screenshot={png}", "--window-size=1200,1600", "--hide-scrollbars")
    if not png.is_file() or png.stat().st_size < 5000:
        problems.append(f"{rel}: no screenshot ({r.stderr.strip()[-200:]})")
    else:
        ink = nonblank(png)
        if 0 <= ink < 0.005:
            problems.append(f"{rel}: the screenshot is blank ({ink:.2%} non-white pixels)")
    print(f"{rel}: {n_math} math elements, {n_rendered} formulas rendered; screenshot {png.relative_to(site)}")
    return problems


def main(argv: list[str]) -> int:
    site = Path(argv[1] if len(argv) > 1 else "docs/_build/html").resolve()
    if not (site / "index.html").is_file():
        sys.exit(f"browser_check: {site}/index.html not found; build the site first (docs/build.sh)")
    exe = browser()
    shots = site / "_screenshots"
    shots.mkdir(exist_ok=True)
    gallery = sorted((site / "_generated" / "gallery").glob("*.html"))
    preferred = [p for p in gallery if p.stem == "latex_rendering"] or gallery[:1]
    pages = [site / "index.html", site / "getting-started.html", site / "conventions.html",
             site / "uses" / "derive.html", site / "api.html"] + preferred
    problems = []
    for page in pages:
        if page.is_file():
            problems += check_page(exe, site, page, shots)
        else:
            problems.append(f"{page.relative_to(site)}: missing")
    for html in site.rglob("*.html"):
        m = EXTERNAL.search(html.read_text(encoding="utf-8", errors="replace"))
        if m:
            problems.append(f"{html.relative_to(site)}: refers to another host: {m.group(0)[:120]}")
    for p in problems:
        print("PROBLEM:", p)
    print("browser check:", "FAILED" if problems else "passed", f"({len(pages)} pages)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
