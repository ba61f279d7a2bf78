"""No function above 60 lines (issue 24): a longer one holds several steps that each deserve a name."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("src", "workflow", "benchmarks", "tests")  # the library, the workflow's scripts, benchmarks, tests
LIMIT = 60  # lines from `def` to the function's last line, decorators left out


def long_functions(source: str, name: str) -> list[str]:
    """`name:line function (N lines)` for each function or method in `source` over LIMIT lines, nested ones too."""
    return [f"{name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(ast.parse(source, filename=name))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > LIMIT]


def test_no_function_is_longer_than_the_limit():
    files = sorted(path for folder in FOLDERS for path in (ROOT / folder).rglob("*.py"))
    assert Path(__file__).resolve() in files and any(path.parent.name == "scripts" for path in files)
    found = [line for path in files
             for line in long_functions(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))]
    assert not found, f"functions over {LIMIT} lines; split each into named steps:\n" + "\n".join(found)


def test_a_function_one_line_over_the_limit_is_named():
    fits = "def fits():\n" + "    x = 1\n" * (LIMIT - 1)
    method = "class C:\n    def too_long(self):\n" + "        x = 1\n" * LIMIT
    assert long_functions(fits, "m.py") == []
    assert long_functions(fits + method, "m.py") == [f"m.py:{LIMIT + 2} too_long ({LIMIT + 1} lines)"]
