"""Regenerate the figures shown on the example pages: run each example in full, keep its PNGs.

Usage, from the repository root: ``python docs/make_example_figures.py [name ...]`` (default: all).
Each example writes into a temporary folder; only its ``.png`` files are copied to
``docs/examples/img/<name>/``, so checkpoints and event files never land in the docs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
IMAGES = ROOT / "docs" / "examples" / "img"


def example_names() -> list[str]:
    return sorted(path.stem for path in EXAMPLES.glob("*.py") if path.stem != "common")


def make_figures(name: str) -> list[Path]:
    """Run ``examples/<name>.py`` in full and copy its PNGs; returns the copied files."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, str(EXAMPLES / f"{name}.py"), "--out", out]
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        target = IMAGES / name
        shutil.rmtree(target, ignore_errors=True)
        figures = sorted(Path(out).glob("*.png"))
        if figures:
            target.mkdir(parents=True)
        return [Path(shutil.copy(png, target)) for png in figures]


def main() -> None:
    for name in sys.argv[1:] or example_names():
        for path in make_figures(name):
            print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
