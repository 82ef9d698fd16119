"""The shell the book's scripts need is the bash 3.2 of stock macOS, and any Python >= 3.10.

Static checks (no macOS here): no bash-4-only feature in the scripts and the Makefile, and the
Makefile picks an interpreter by version, not by name.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHELL_FILES = [*sorted((REPO / "scripts").glob("*.sh")), REPO / ".ci" / "run", REPO / "Makefile"]
BASH4_ONLY = {
    "associative array": r"\b(declare|typeset|local)\s+-[a-zA-Z]*A",
    "mapfile/readarray": r"\b(mapfile|readarray)\b",
    "case conversion ${var,,} / ${var^^}": r"\$\{[A-Za-z_][A-Za-z_0-9]*(\[[^]]*\])?(,,?|\^\^?)[^}]*\}",
    "nameref": r"\bdeclare\s+-[a-zA-Z]*n",
    "|& pipe": r"\|&",
    "&>> append": r"&>>",
    "coproc": r"\bcoproc\b",
    "globstar": r"shopt\s+-s\s+globstar",
}


@pytest.mark.parametrize("path", SHELL_FILES, ids=lambda p: p.name)
def test_no_bash4_only_features(path):
    text = path.read_text()
    found = [name for name, pattern in BASH4_ONLY.items() if re.search(pattern, text)]
    assert not found, f"{path.relative_to(REPO)} uses {found}, which the bash 3.2 of stock macOS lacks"


def test_the_checks_catch_what_they_look_for():
    for sample in ("declare -A SUMS=()", "mapfile -t lines", 'echo "${name,,}"', "cmd |& tee", "local -A x"):
        assert any(re.search(p, sample) for p in BASH4_ONLY.values()), sample


def test_makefile_chooses_a_python_by_version():
    out = subprocess.run(["make", "-s", "-f", str(REPO / "Makefile"), "--eval", "print-python: ; @echo $(PYTHON)",
                          "print-python"], capture_output=True, text=True, cwd=REPO, check=True).stdout.strip()
    version = subprocess.run([out, "-c", "import sys; print(sys.version_info[:2] >= (3, 10))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert version == "True", f"make picked {out!r}, which is older than Python 3.10"
