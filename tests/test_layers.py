"""The library's import graph runs one way: building blocks never import the stages that use them.

training/ and evaluation/ are siblings that share what they both need through lower modules (models.sampling,
figures, devices, models.image_input), so a change in one never ripples through the other.
"""

import ast
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parents[1] / "mindvis"

# package -> packages it must never import (directly or in a function body)
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "training": ("evaluation", "workflow", "plan"),
    "evaluation": ("training", "workflow", "plan"),
    "models": ("training", "evaluation", "checkpoints", "data", "demo", "workflow", "plan"),
    "checkpoints": ("training", "evaluation", "workflow", "plan"),
    "data": ("preprocess", "training", "evaluation", "workflow", "plan"),
    "preprocess": ("models", "training", "evaluation", "checkpoints", "demo", "workflow", "plan"),
    "demo": ("training", "evaluation", "workflow", "plan"),
    "config": ("models", "training", "evaluation", "checkpoints", "data", "demo", "workflow", "plan"),
}


def imported_packages(path: Path) -> set[str]:
    """The mindvis packages/modules (first component below `mindvis`) that a source file imports anywhere."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mindvis."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[1] for alias in node.names if alias.name.startswith("mindvis."))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_runs_upward(package):
    upward = []
    for path in sorted((LIBRARY / package).rglob("*.py")):
        relative = path.relative_to(LIBRARY).as_posix()
        bad = imported_packages(path) & set(FORBIDDEN[package])
        upward += [f"{relative} -> {name}" for name in sorted(bad)]
    assert upward == []


def test_the_check_sees_function_level_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n"
                      "    from mindvis.evaluation.metrics import pixcorr\n"
                      "    import mindvis.training.common\n")
    assert imported_packages(source) == {"evaluation", "training"}
