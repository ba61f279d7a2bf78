"""The layout's promises (ARCHITECTURE.md): subpackages depend on each other in one direction only,
and moving a same-width module stays light."""

import ast
import os
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


def test_the_conda_environment_pins_what_requirements_pin_and_points_nowhere_in_the_repo():
    """Snakemake builds the environment wherever it likes (--conda-prefix): no relative path may be in it."""
    import yaml

    repo = PACKAGE.parents[1]
    env = yaml.safe_load((repo / "workflow/envs/transmod.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pins = dict(line.split("==") for line in (repo / "requirements.txt").read_text().splitlines()
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
