"""The layout's promises (ARCHITECTURE.md): subpackages depend on each other in one direction only,
and moving a same-width module stays light."""

import ast
import subprocess
import sys
from pathlib import Path

import transmod

PACKAGE = Path(transmod.__file__).parent
SUBPACKAGES = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())


def imported_subpackages(path: Path) -> set[str]:
    """Subpackages of transmod that a file imports, at top level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found |= {n.split(".")[1] for n in names if n.startswith("transmod.") and n.split(".")[1] in SUBPACKAGES}
    return found


def test_subpackages_never_import_each_other_both_ways():
    deps = {pkg: set() for pkg in SUBPACKAGES}
    for pkg in SUBPACKAGES:
        for path in (PACKAGE / pkg).rglob("*.py"):
            deps[pkg] |= imported_subpackages(path) - {pkg}
    assert set(SUBPACKAGES) >= {"align", "demo", "modules", "results", "train", "workflow"}
    order, left = [], dict(deps)
    while left:  # a topological order exists exactly when the graph has no cycle
        ready = sorted(p for p, d in left.items() if not d - set(order))
        assert ready, f"subpackages import each other: {({p: sorted(d) for p, d in left.items()})}"
        order += ready
        left = {p: d for p, d in left.items() if p not in ready}
    assert not deps["modules"], "module kinds and formats depend on nothing else of transmod's subpackages"


def test_moving_a_same_width_module_imports_neither_pyarrow_nor_scipy():
    code = ("import sys, transmod.align.transfer, transmod.modules.io; "
            "print(sorted(m for m in ('pyarrow', 'scipy', 'pandas') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
