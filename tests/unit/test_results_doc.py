"""docs/RESULTS.md: every committed JSON parses and every table is what it renders."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import ModuleType

import pytest

from tests.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]


def _results() -> ModuleType:
    return load_script("results")


def test_every_committed_json_parses() -> None:
    files = sorted((ROOT / "docs").rglob("*.json"))
    assert files
    for path in files:
        json.loads(path.read_text())


@pytest.mark.parametrize("name", list(_results().SECTIONS))
def test_each_table_is_the_one_its_json_renders(name: str) -> None:
    results = _results()
    text = results.RESULTS.read_text()
    assert results.render(text, [name]) == text, f"run `make results` ({name})"


def test_a_changed_number_is_caught(tmp_path: Path) -> None:
    results = _results()
    text = results.RESULTS.read_text()
    begin = text.index("<!-- warm-eval-k1:begin -->")
    row = text.index("| cloudphysics_vm |", begin)
    number = re.compile(r"\d\.\d{4}").search(text, row)  # the row's first hit ratio
    assert number is not None
    digit = str((int(number.group()[-1]) + 1) % 10)
    edited = text[: number.end() - 1] + digit + text[number.end():]
    assert results.render(edited, ["warm-eval-k1"]) != edited
