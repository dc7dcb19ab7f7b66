"""The package's modules form no import cycle of two: no module imports a module that imports it back, at the top
or inside a function (a function-level import hides a cycle from the interpreter, not from a reader)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "debate_amp"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)  # from package import module
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found & modules


def test_no_two_modules_import_each_other():
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    imports = {name: _imports(path, set(paths)) - {name} for name, path in paths.items()}
    assert imports["debate_amp.agents.model_agent"] >= {"debate_amp.protocol"}  # the scan sees imports
    assert imports["debate_amp.agents.wiring"] >= {"debate_amp.generation"}  # and imports inside functions
    cycles = sorted({tuple(sorted((a, b))) for a in imports for b in imports[a] if a in imports[b]})
    assert cycles == []
