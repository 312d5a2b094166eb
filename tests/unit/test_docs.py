"""The README and docs/: short enough to read, links that resolve, `make help` complete."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# [text](target) and ![alt](target); a target with a scheme is not a file of the repository.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def test_the_readme_reads_in_a_minute() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150
    first = "\n".join(lines[:60])
    for shown in ("make lab", ".venv/bin/scalelab run ", "make serve", "make setup", "!["):
        assert shown in first, f"the README's first 60 lines lack {shown!r}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_is_a_file_of_the_repository(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#", 1)[0]).resolve()
        assert path.is_relative_to(REPO), f"{page.name} points outside the repository: {target}"
        assert path.exists(), f"{page.name} links to {target}, which does not exist"
    # paths in backquotes too: nothing a clone does not have
    assert "../shared" not in text and "/work/" not in text, f"{page.name} names a path outside"


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_help_lists_every_documented_target() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    documented = re.findall(r"^([a-z][a-z-]*):[^\n]*## ", makefile, re.M)
    listed = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(REPO)],
                            capture_output=True, text=True, timeout=30, check=True).stdout
    names = [line.split()[0] for line in listed.splitlines() if line.strip()]
    assert names == documented
    assert {"help", "setup", "lab", "serve", "matrix", "test", "lint"} <= set(names)
    # the variables of a comment are shown with their values
    assert "$(" not in listed
