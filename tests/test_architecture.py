"""The layout's promises (ARCHITECTURE.md): every import follows the directions its table states, and moving a
same-width module stays light."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import transmod

PACKAGE = Path(transmod.__file__).parent
REPO = PACKAGE.parents[1]
SUBPACKAGES = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
# The demo's builders: outside the installed package, held to a row of the table of their own.
DEMO = REPO / "workflow" / "demo" / "transmod_demo"


def imported_names(path: Path) -> set[str]:
    """Every dotted name a file imports (`a.b` and `a.b.c` for `from a.b import c`), at top level or inside
    functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def imported_subpackages(path: Path) -> set[str]:
    """Subpackages of transmod that a file imports."""
    parts = [n.split(".") for n in imported_names(path)]
    return {p[1] for p in parts if p[0] == "transmod" and len(p) > 1 and p[1] in SUBPACKAGES}


def files_of(name: str) -> list[Path]:
    """The files that a row of the table of directions covers."""
    if name == DEMO.name:
        return sorted(DEMO.glob("*.py"))
    return sorted((PACKAGE / name).rglob("*.py")) if name in SUBPACKAGES else [PACKAGE / f"{name}.py"]


def stated_layers() -> dict[str, set[str]]:
    """ARCHITECTURE.md's table of who may import whom: {package or top-level module: allowed subpackages}."""
    text = (REPO / "ARCHITECTURE.md").read_text()
    table = text[text.index("| package | may import |"):].split("\n\n", 1)[0]
    allowed = {}
    for row in table.splitlines()[2:]:
        who, may = (cell.strip() for cell in row.strip("|").split("|"))
        targets = set(SUBPACKAGES) if may.startswith("any") else set(re.findall(r"`(\w+)`", may))
        allowed |= {name: targets for name in re.findall(r"`(\w+)`", who)}
    return allowed


def test_every_import_follows_the_stated_directions():
    allowed = stated_layers()
    tops = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    names = SUBPACKAGES + tops + [DEMO.name]
    assert set(names) == set(allowed), "every subpackage, top-level module and the demo has a row"
    for name in names:
        for path in files_of(name):
            extra = imported_subpackages(path) - {name} - allowed[name]
            assert not extra, f"{path.relative_to(REPO)} imports {sorted(extra)}, against ARCHITECTURE.md"


def test_the_installed_library_never_imports_the_demo():
    """`pip install` leaves workflow/demo out, so the library must work without it."""
    for path in PACKAGE.rglob("*.py"):
        demo = sorted(n for n in imported_names(path) if n.split(".")[0] == DEMO.name)
        assert not demo, f"{path.relative_to(REPO)} imports {demo}"


def test_the_stated_directions_have_no_cycle():
    deps = {name: targets - {name} for name, targets in stated_layers().items() if name in SUBPACKAGES}
    order, left = [], dict(deps)
    while left:  # a topological order exists exactly when the graph has no cycle
        ready = sorted(p for p, d in left.items() if not d - set(order))
        assert ready, f"the stated directions form a cycle: {left}"
        order += ready
        left = {p: d for p, d in left.items() if p not in ready}


def test_moving_a_same_width_module_imports_neither_pyarrow_nor_scipy():
    code = ("import sys, transmod.align.transfer, transmod.modules.io; "
            "print(sorted(m for m in ('pyarrow', 'scipy', 'pandas') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_conda_environment_pins_what_requirements_pin_and_points_nowhere_in_the_repo():
    """Snakemake builds the environment wherever it likes (--conda-prefix): no relative path may be in it."""
    import yaml

    env = yaml.safe_load((REPO / "workflow/envs/transmod.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pins = dict(line.split("==") for line in (REPO / "requirements.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#"))
    assert pip and all("==" in p and not p.startswith(("-", ".", "/")) for p in pip), pip
    assert {p.split("==")[0]: p.split("==")[1] for p in pip}.items() <= pins.items()
    assert {"torch", "transformers", "adapters", "peft", "pandas"} <= {p.split("==")[0] for p in pip}


def test_jobs_import_transmod_from_the_workflows_source_first(monkeypatch, tmp_path):
    from transmod.workflow.joblog import add_to_pythonpath

    src = str(tmp_path / "src")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["/elsewhere", src, ""]))
    add_to_pythonpath(src)
    assert os.environ["PYTHONPATH"] == os.pathsep.join([src, "/elsewhere"])
    (tmp_path / "src" / "probe").mkdir(parents=True)
    (tmp_path / "src" / "probe" / "__init__.py").write_text("WHERE = __file__\n")
    done = subprocess.run([sys.executable, "-c", "import probe; print(probe.WHERE)"], capture_output=True, text=True,
                          check=True, env={**os.environ, "PYTHONPATH": os.environ["PYTHONPATH"]}, cwd=tmp_path.parent)
    assert done.stdout.strip().startswith(src)
