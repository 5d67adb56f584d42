"""The documentation: every python block of README.md and docs/ runs as written (a block with
worker processes as a script, `python example.py`; the shell blocks are the commands CI and
tests/test_cli.py run; `text` blocks only show output), the site builds with `mkdocs build
--strict` (a broken link, a missing reference or any warning fails it), and the built pages
are read as a reader sees them, in headless Chromium."""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))] if (ROOT / "docs").exists() \
    else []  # fmt: skip


def _blocks() -> list[tuple[str, str, str]]:
    found = []
    for page in PAGES:
        for lang, code in re.findall(r"```(\w*)\n(.*?)```", page.read_text(), flags=re.S):
            found.append((page.name, lang, code))
    return found


BLOCKS = _blocks()
PYTHON = [(page, code) for page, lang, code in BLOCKS if lang == "python"]
SCRIPTS = [(page, code) for page, code in PYTHON if 'if __name__ == "__main__":' in code]
SNIPPETS = [(page, code) for page, code in PYTHON if (page, code) not in SCRIPTS]


@pytest.mark.source_tree
def test_every_block_says_what_it_is() -> None:
    assert len(PYTHON) >= 8
    for page, lang, _ in BLOCKS:
        assert lang in ("python", "bash", "text"), f"{page}: a ``` block without a language"


@pytest.mark.source_tree
@pytest.mark.parametrize("page, code", SNIPPETS,
                         ids=[f"{p}-{i}" for i, (p, _) in enumerate(SNIPPETS)])
def test_python_block_runs(page: str, code: str, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    assert code.startswith(("import ", "from ")), f"{page}: a block that does not run alone"
    monkeypatch.chdir(tmp_path)
    exec(compile(code, page, "exec"), {"__name__": "docs"})


@pytest.mark.source_tree
@pytest.mark.parametrize("page, code", SCRIPTS,
                         ids=[f"{p}-{i}" for i, (p, _) in enumerate(SCRIPTS)])
def test_script_block_runs(page: str, code: str, tmp_path: Path) -> None:
    if "fastgrad.distributed" in code:
        pytest.importorskip("distributed", reason="Dask is optional: fastgrad[distributed]")
    script = tmp_path / "example.py"
    script.write_text(code)
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


@pytest.mark.source_tree
def test_the_readme_is_a_front_page() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) < 150
    for page in ("getting-started", "from-micrograd", "record-and-replay", "distributed"):
        assert f"(docs/{page}.md)" in text


@pytest.mark.source_tree
def test_the_engine_pictures_are_drawn_from_the_engine(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the pictures are drawn with matplotlib")
    import runpy

    script = runpy.run_path(str(ROOT / "docs" / "make_engine_pictures.py"))
    script["main"](tmp_path)
    for name in script["PICTURES"]:
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG", name
        assert (ROOT / "docs" / "images" / name).exists(), f"{name}: run the script"
    assert len(script["op_rows"]()) >= 20  # every row of csrc/ops.def


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("mkdocs", reason="the site needs the docs extra: pip install -e '.[docs]'")
    pytest.importorskip("mkdocstrings_handlers.python", reason="the docs extra")
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
                           cwd=ROOT, capture_output=True, text=True, timeout=600,
                           env=dict(os.environ, NO_MKDOCS_2_WARNING="1"))  # fmt: skip
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return out


@pytest.mark.source_tree
def test_the_site_builds_strict_with_every_page(site: Path) -> None:
    for page in ("index.html", "reference/index.html", "higher-order/index.html",
                 "distributed/index.html", "images/pinn.png"):  # fmt: skip
        assert (site / page).exists(), page
    reference = (site / "reference" / "index.html").read_text()
    for name in ("fastgrad._core.Tape.run", "fastgrad.transforms.jvp",
                 "fastgrad.distributed.DataParallel", "fastgrad.nn.utils.parameters_to_vector"):
        assert f'id="{name}"' in reference, name


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # (no line per request)
        pass


@pytest.fixture(scope="module")
def browser(site: Path) -> Iterator[tuple[Any, str]]:
    """Chromium (headless, Debian's chromium and chromium-driver) on the site served over
    HTTP (the search runs in a web worker, which file:// pages may not start)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium drives Chromium")
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip("Chromium and its driver are not installed (apt-get install chromium "
                    "chromium-driver)")  # fmt: skip
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=driver_path)
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        driver.quit()
        server.shutdown()


def _screenshot(driver: Any, name: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("FASTGRAD_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(folder / f"{name}.png"))


ALL_IMAGES_LOADED = ("return Array.from(document.images).every("
                     "i => i.complete && i.naturalWidth > 0) && document.images.length")


@pytest.mark.source_tree
@pytest.mark.parametrize("path, title, pictures", [
    ("/", "fastgrad", 1),
    ("/reference/", "Reference - fastgrad", 0),
    ("/higher-order/", "Higher-order - fastgrad", 1),
])  # fmt: skip
def test_a_page_as_a_reader_sees_it(browser: tuple[Any, str], path: str, title: str,
                                    pictures: int, tmp_path: Path) -> None:  # fmt: skip
    driver, base = browser
    driver.get(base + path)
    assert driver.title == title
    if pictures:
        assert driver.execute_script(ALL_IMAGES_LOADED) >= pictures
    if path == "/reference/":
        assert driver.find_element("id", "fastgrad._core.Tape.run").is_displayed()
    _screenshot(driver, path.strip("/") or "index", tmp_path)


@pytest.mark.source_tree
def test_the_search_finds_run(browser: tuple[Any, str], tmp_path: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver, base = browser
    driver.get(base + "/?q=run")  # Material opens its search with the query of ?q=
    results = WebDriverWait(driver, 30).until(
        lambda d: d.find_elements("css selector", ".md-search-result__item"))
    assert any("run" in r.text.lower() for r in results)
    _screenshot(driver, "search-run", tmp_path)
