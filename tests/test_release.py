"""The release: the sdist and the wheel built from it hold the whole package, and the wheel,
installed into a fresh virtual environment, runs the demo with its ground-truth check.

Offline: the build uses the installed setuptools (``--no-isolation``) and pip installs the
one wheel file (``--no-index --no-deps``); the venv sees this interpreter's packages
(torch, numpy, ...) but its own copy of stategrad comes first on its path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml

import stategrad

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "stategrad"


def _package_files() -> set[str]:
    """Every file of the package as it sits in the source tree, caches left out."""
    return {p.relative_to(PACKAGE.parent).as_posix() for p in PACKAGE.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def _clean_env() -> dict[str, str]:
    # PYTHONPATH would put a checkout ahead of the installed wheel
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def _run(cmd: list, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=_clean_env(), text=True,
                          capture_output=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """sdist, then the wheel built from that sdist (python -m build's default), from a copy
    of the sources so that the checkout gets no build/ or egg-info folders."""
    src = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "src", src / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, src], cwd=src)
    return out


def _one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {folder}, found {found}"
    return found[0]


def test_distributions_carry_the_version_and_every_package_file(dist):
    version = stategrad.__version__
    wheel = _one(dist, f"stategrad-{version}-py3-none-any.whl")
    sdist = _one(dist, f"stategrad-{version}.tar.gz")
    expected = _package_files()
    with zipfile.ZipFile(wheel) as zf:
        in_wheel = set(zf.namelist())
        metadata = zf.read(f"stategrad-{version}.dist-info/METADATA").decode()
        entry_points = zf.read(f"stategrad-{version}.dist-info/entry_points.txt").decode()
    assert expected - in_wheel == set(), "package files missing from the wheel"
    assert f"Version: {version}\n" in metadata
    assert "stategrad = stategrad.cli:main" in entry_points
    with tarfile.open(sdist) as tf:
        in_sdist = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    assert {f"src/{f}" for f in expected} - in_sdist == set(), "package files missing from the sdist"
    assert {"pyproject.toml", "README.md"} <= in_sdist


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_passes_the_demo_check(dist, tmp_path):
    wheel = _one(dist, "stategrad-*.whl")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", venv], cwd=tmp_path)
    python, command = venv / "bin" / "python", venv / "bin" / "stategrad"
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--no-cache-dir",
          "--disable-pip-version-check", wheel], cwd=tmp_path)

    # The venv imports its own copy, not the editable checkout of this interpreter.
    where = _run([python, "-c", "import stategrad, sysconfig; print(stategrad.__file__); "
                  "print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path).stdout.split("\n")
    module, purelib = Path(where[0]).resolve(), Path(where[1]).resolve()
    assert module.is_relative_to(purelib) and purelib.is_relative_to(venv.resolve()), where
    assert not module.is_relative_to(REPO)

    version = _run([command, "--version"], cwd=tmp_path).stdout
    assert version.strip() == f"stategrad, version {stategrad.__version__}"

    work = tmp_path / "work"
    work.mkdir()
    _run([command, "demo", "--check"], cwd=work, timeout=900)
    assert (work / "demo-output" / "report" / "report.html").is_file()


def test_citation_and_changelog_name_this_version():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert str(cff["version"]) == stategrad.__version__
    titles = [(r["type"], r["title"].lower(), r["year"]) for r in cff["references"]]
    assert ("conference-paper", "state gradients for rnn memory analysis", 2018) in titles
    assert ("article", "state gradients for analyzing memory in lstm language models",
            2020) in titles
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## [Unreleased]" in changelog
    assert f"## [{stategrad.__version__}] - " in changelog
