"""The repository explains itself: every reference to docs/method.md names a section that exists, and nothing
cites a document that is not in the repository."""

from __future__ import annotations

import re
import subprocess

from helpers import REPO


def _tracked() -> dict[str, str]:
    names = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    out = {}
    for name in names:
        try:
            out[name] = (REPO / name).read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
    return out


def test_method_references_name_existing_sections():
    sections = set(re.findall(r"^## (\d+)\. ", (REPO / "docs" / "method.md").read_text(), flags=re.M))
    cited = {}
    for name, text in _tracked().items():
        for match in re.finditer(r"docs/method\.md,? sections? ([\d ,and]+)", text):
            cited.setdefault(name, set()).update(re.findall(r"\d+", match.group(1)))
    assert cited, "nothing cites docs/method.md"
    missing = {name: nums - sections for name, nums in cited.items() if nums - sections}
    assert not missing, missing


def test_no_reference_to_a_document_outside_the_repository():
    assert not [name for name, text in _tracked().items() if "DESIGN.md" in text and name != "tests/test_docs.py"]
