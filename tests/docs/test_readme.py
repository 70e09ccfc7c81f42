"""The README's Python examples run as written, in a fresh interpreter, against the installed fastnet."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks(section):
    """The ```python blocks of the README section headed ``## {section}``."""
    text = README.read_text()
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert match, f"README has no section {section!r}"
    return re.findall(r"```python\n(.*?)```", match.group(1), flags=re.S)


def test_the_scikit_learn_example_runs_and_is_accurate(tmp_path):
    """The digits Pipeline of "With scikit-learn": runs as written and scores as MLPClassifier does (> 0.95)."""
    blocks = python_blocks("With scikit-learn")
    assert len(blocks) == 1
    done = subprocess.run([sys.executable, "-c", blocks[0]], capture_output=True, text=True, cwd=tmp_path,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    accuracy = float(re.search(r"test accuracy ([0-9.]+)", done.stdout).group(1))
    assert accuracy > 0.95
