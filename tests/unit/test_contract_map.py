"""docs/contract.md names real code and real tests: every `path::name` code reference exists
(the module, and the name defined in it), every test reference exists, and every clause of
§0-§9 has a row."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MAP = REPO / "docs" / "contract.md"
REF = re.compile(r"`([\w./]+\.py)(?:::([\w.]+))?`")
CLAUSES = (
    "§0.1", "§0.2", "§0.3", "§0.4", "§1.1", "§1.2", "§1.3", "§1.4", "§1.5", "§2", "§2.1",
    "§3 fields", "§3 rule 1", "§3 rule 2", "§4", "§5 time", "§5 give-back", "§5 regime",
    "§6 order", "§6 step 1", "§6 step 2", "§6 step 3", "§6 step 4", "§7", "§8 candidates",
    "§8 risk", "§9",
)  # fmt: skip


def _rows() -> dict[str, tuple[str, str]]:
    rows = {}
    for line in MAP.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("§"):
            rows[cells[0]] = (cells[2], cells[3])
    return rows


def _defined(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def _missing(cell: str) -> list[str]:
    out = []
    for path, name in REF.findall(cell):
        file = REPO / path
        if not file.exists():
            out.append(f"{path}: no such file")
        elif name and name.split(".")[-1] not in _defined(file):
            out.append(f"{path}::{name}: not defined there")
    return out


def test_every_clause_has_a_row_with_code_and_tests() -> None:
    rows = _rows()
    assert [c for c in CLAUSES if c not in rows] == []
    for clause, (code, tests) in rows.items():
        assert REF.search(code), f"{clause}: no code named"
        assert "tests/" in tests, f"{clause}: no test named"


def test_named_code_and_tests_exist() -> None:
    problems = [
        f"{clause}: {p}"
        for clause, (code, tests) in _rows().items()
        for p in _missing(code) + _missing(tests)
    ]
    assert problems == []


def test_the_checker_sees_a_missing_name() -> None:
    assert _missing("`atlas_actors/domain/gate.py::no_such_function`")
    assert _missing("`tests/unit/no_such_file.py`")
    assert not _missing("`atlas_actors/domain/gate.py::open_allowed`")
