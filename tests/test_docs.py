"""The documentation's code runs, every example has a page, and the site builds without warnings.

The Python blocks (fenced as ```python) of the README and each guide page run in order in one namespace per
page, all pages in one child process (so the keys and metrics they register stay out of this test process).
Code of other frameworks, shown for comparison, is fenced as ```py: highlighted the same, never run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RUNNABLE_PAGES = [  # relative to the repository's root
    "README.md",
    "docs/index.md",
    "docs/getting-started.md",
    "docs/guide/callbacks.md",
    "docs/guide/metrics.md",
    "docs/guide/state-keys.md",
    "docs/guide/serialisation.md",
    "docs/guide/coming-from.md",
]
# Run after a page's blocks: the quickstarts must learn (three classes: guessing gets 0.33).
PAGE_CHECKS = {
    "README.md": 'assert history[-1]["val_acc"] > 0.9, history[-1]',
    "docs/index.md": 'assert history[-1]["val_acc"] > 0.9, history[-1]',
}
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)

# Runs in the child: exec each page's blocks in a fresh namespace, in a folder of its own; report errors.
RUNNER = """
import json, os, sys, traceback, warnings
import torch
torch.set_num_threads(1)  # tiny models: more threads only contend
warnings.simplefilter("ignore")
results = {}
for page, code in json.loads(sys.stdin.read()).items():
    folder = os.path.join(sys.argv[1], page.replace("/", "_"))
    os.makedirs(folder)
    os.chdir(folder)
    try:
        exec(compile(code, page, "exec"), {"__name__": "__docs__"})
        results[page] = None
    except BaseException:
        results[page] = traceback.format_exc()
print("RESULTS" + json.dumps(results))
"""


def python_blocks(page: str) -> str:
    return "\n".join(PYTHON_BLOCK.findall((ROOT / page).read_text()))


@pytest.fixture(scope="module")
def page_errors(tmp_path_factory) -> dict:
    pages = {page: python_blocks(page) + "\n" + PAGE_CHECKS.get(page, "") for page in RUNNABLE_PAGES}
    completed = subprocess.run(
        [sys.executable, "-c", RUNNER, str(tmp_path_factory.mktemp("docs"))],
        input=json.dumps(pages), capture_output=True, text=True, timeout=300,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )  # fmt: skip
    assert "RESULTS" in completed.stdout, completed.stderr[-4000:]
    return json.loads(completed.stdout.split("RESULTS", 1)[1])


@pytest.mark.parametrize("page", RUNNABLE_PAGES)
def test_python_blocks_of_the_page_run(page, page_errors):
    assert python_blocks(page), f"{page} has no python blocks: remove it from RUNNABLE_PAGES"
    assert page_errors[page] is None, f"a python block of {page} failed:\n{page_errors[page]}"


def test_every_example_has_a_page_that_includes_its_source():
    included = set()
    for page in (DOCS / "examples").glob("*.md"):
        included.update(re.findall(r'--8<-- "examples/(\w+)\.py"', page.read_text()))
    scripts = {path.stem for path in (ROOT / "examples").glob("*.py")} - {"common"}
    assert scripts == included


def test_every_figure_on_the_example_pages_exists():
    for page in (DOCS / "examples").glob("*.md"):
        for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page.read_text()):
            assert (page.parent / image).is_file(), f"{page.name} shows {image}, which does not exist"


def test_site_builds_without_warnings(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    pytest.importorskip("mkdocstrings_handlers.python")
    completed = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert (tmp_path / "site" / "api" / "trial" / "index.html").is_file()
    for page in (tmp_path / "site" / "examples").glob("*/index.html"):
        if page.parent.name != "img":
            assert "__main__" in page.read_text(), f"{page.parent.name}: the script's source was not included"


def test_the_migration_guide_lists_the_printer_interval_and_the_exact_cutout_width():
    from torchbearer.callbacks import ConsolePrinter

    page = (DOCS / "guide" / "migrating.md").read_text()
    assert f"at most every {ConsolePrinter.refresh_interval} s" in page
    assert "`Cutout` and `RandomErase` cut holes `2 * (length // 2)` pixels wide" in page
    assert "holes are exactly `length` wide" in page
