"""The docs point at files that are in the repository.

Previously comments, the data README and the model card pointed at a POLICY.md
and a DESIGN.md that were not in the repository, one link through ``../../shared``.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)\s]+)\)")
DOCS = sorted((REPO / "docs").glob("*.md")) + [REPO / "data" / "README.md", REPO / "README.md"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve_inside_the_repository(doc):
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a web address, or a place on the same page
        path = (doc.parent / target.split("#")[0]).resolve()
        assert path.is_relative_to(REPO), f"{doc.name}: {target} leaves the repository"
        assert path.exists(), f"{doc.name}: {target} does not exist"


def test_policy_and_design_are_in_docs():
    assert (REPO / "docs" / "policy.md").exists() and (REPO / "docs" / "design.md").exists()
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True).stdout.split()
    this_file = str(Path(__file__).relative_to(REPO))
    outside = [name for name in tracked if name.endswith((".py", ".md", ".jinja", ".yaml", ".yml"))
               and name != this_file and "../shared" in (REPO / name).read_text(encoding="utf-8", errors="replace")]
    assert outside == [], "references to files outside the repository"
