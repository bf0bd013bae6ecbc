"""The package's layers, as ARCHITECTURE.md draws them: imports go one way.

Read from the source with :mod:`ast`, so the test sees every import a module
writes, not what happens to be loaded.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "tinyconv"

# Each folder (or top-level module) and the layers it may import from; a
# layer may always import itself. From the arithmetic up to the command line.
ALLOWED = {
    "checks": set(),
    "fileio": set(),
    "nn": {"checks"},
    "tutorial": {"checks", "fileio", "data"},
    "data": {"checks", "fileio"},
    "models": {"checks", "fileio", "nn", "data"},
    "training": {"checks", "fileio", "nn", "data", "models"},
    "interop": {"checks", "fileio", "nn", "data", "models"},
    "app": {"checks", "fileio", "nn", "tutorial", "data", "models", "training"},
    "cli": {"checks", "fileio", "nn", "tutorial", "data", "models", "training", "interop",
            "app"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The tinyconv modules that ``path`` imports, as dotted names."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("tinyconv"):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("tinyconv"))
    return {m for m in found if module_path(m) is not None}


def module_path(name: str) -> Path | None:
    path = PACKAGE.parent.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def layer(name: str) -> str | None:
    parts = name.split(".")
    return parts[1].removesuffix(".py") if len(parts) > 1 else None


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def test_the_reference_imports_nothing_of_the_fast_path():
    # The literal reference is the oracle the fast path is tested against:
    # it may lean on the shared input checks, and on nothing else of tinyconv.
    imports = imports_of(MODULES["tinyconv.tutorial.reference"])
    assert imports <= {"tinyconv.checks"}, imports


def test_imports_go_down_the_layers():
    wrong = []
    for name, path in MODULES.items():
        own = layer(name)
        if own in (None, "__main__"):  # the package's front door gathers the public names
            continue
        for target in imports_of(path):
            theirs = layer(target)
            if theirs is not None and theirs != own and theirs not in ALLOWED[own]:
                wrong.append(f"{name} imports {target}")
    assert not wrong, wrong


def test_no_import_cycles():
    graph = {name: {t for t in imports_of(path) if t in MODULES and t != name}
             for name, path in MODULES.items()}
    finished, open_ = set(), []

    def visit(node):
        open_.append(node)
        for target in sorted(graph[node]):
            assert target not in open_, " -> ".join(open_[open_.index(target):] + [target])
            if target not in finished:
                visit(target)
        open_.pop()
        finished.add(node)

    for node in sorted(graph):
        if node not in finished:
            visit(node)
