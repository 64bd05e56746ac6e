"""The code keeps the contracts DESIGN.md sets for it: a docstring on every public module, class and function;
no device hard-coded with `.cuda()`; no pickled checkpoints (weights go through safetensors)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = [ROOT / "vipcli", ROOT / "backbones"]


def _sources() -> list[Path]:
    return sorted(path for package in PACKAGES if package.is_dir() for path in package.rglob("*.py"))


def public_without_docstring(path: Path) -> list[str]:
    """The public definitions of one source file (not under a `_private` name) that have no docstring."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    missing = [] if ast.get_docstring(tree) else ["module"]

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not child.name.startswith("_"):
                if ast.get_docstring(child) is None:
                    missing.append(f"{prefix}{child.name} (line {child.lineno})")
                if isinstance(child, ast.ClassDef):
                    visit(child, f"{prefix}{child.name}.")

    visit(tree, "")
    return missing


def test_the_check_finds_a_public_function_without_a_docstring(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text('"""A module."""\n\ndef shown():\n    return 1\n\ndef _hidden():\n    return 2\n\n'
                      'class Box:\n    """A box."""\n\n    def open(self):\n        pass\n')
    assert public_without_docstring(source) == ["shown (line 3)", "Box.open (line 12)"]


def test_every_public_definition_has_a_docstring():
    missing = [f"{path.relative_to(ROOT)}: {name}" for path in _sources() for name in public_without_docstring(path)]
    assert missing == []


def test_no_device_is_hard_coded_and_no_checkpoint_is_pickled():
    found = [f"{path.relative_to(ROOT)}:{number}" for path in _sources()
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if ".cuda()" in line or "import pickle" in line or "torch.load(" in line]
    assert found == []
