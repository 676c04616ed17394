"""The documentation site builds with warnings as errors, its API reference covers the whole
public API, and a reference to a name that does not exist fails the build."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import stategrad

REPO = Path(__file__).resolve().parents[1]

pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
pytest.importorskip("mkdocstrings_handlers.python", reason="mkdocstrings[python] is not installed")


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                           str(config), "--site-dir", str(site)], cwd=config.parent, env=env,
                          capture_output=True, text=True, timeout=300)


def _text(page: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    proc = _build(REPO / "mkdocs.yml", site)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return site


def test_site_builds_strict_with_every_page(site):
    for page in ("index.html", "method/index.html", "engine/index.html",
                 "architecture/index.html", "reliability/index.html", "tutorials/index.html",
                 "reference/api/index.html", "changelog/index.html"):
        assert (site / page).is_file(), page
    # the home page is the README, with its links into docs/ made relative to the site
    home = (site / "index.html").read_text(encoding="utf-8")
    assert "Set-up: two commands" in home and 'href="architecture/"' in home
    assert stategrad.__version__ in _text(site / "changelog" / "index.html")


def test_api_reference_documents_every_public_name(site):
    text = _text(site / "reference" / "api" / "index.html")
    for name, sub in stategrad._API.items():
        # the signature line of the object, with its docstring below
        assert re.search(rf"stategrad\.{sub}\.(?:{name}\.)?{name}\b", text), name
    assert "Sums and counts of G(t, d)" in text  # compute_state_gradients' docstring


def test_a_reference_to_a_missing_name_fails_the_build(tmp_path):
    # the same configuration on a copy of the docs with one stale reference added
    shutil.copy2(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(REPO / "docs", tmp_path / "docs",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("README.md", "CHANGELOG.md"):
        shutil.copy2(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    with open(tmp_path / "docs" / "method.md", "a", encoding="utf-8") as f:
        f.write("\n::: stategrad.gradients.compute_state_gradients_renamed\n")
    proc = _build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert proc.returncode != 0
    assert "compute_state_gradients_renamed" in proc.stdout + proc.stderr
