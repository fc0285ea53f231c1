"""The project's habits (issue 36): the licence and its notices, the changelog's version, the checks
CI and pre-commit run, and what `make clean` removes as the README says it."""

from __future__ import annotations

import re
import subprocess
import tomllib
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_package_is_apache_2_and_ships_its_licence_and_the_data_notices():
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE", "NOTICE"]
    licence = (ROOT / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert "END OF TERMS AND CONDITIONS" in licence  # the whole text, not a pointer to it
    notice = (ROOT / "NOTICE").read_text()
    # Every third-party data file the repository ships is named in NOTICE with its source, and exists.
    for shipped, source in (
        ("db/cities.csv", "data.humdata.org"),
        ("api/console/static/syria.geojson", "naturalearthdata.com"),
    ):
        assert shipped in notice and source in notice
        assert (ROOT / shipped).is_file()
    assert (ROOT / "api/console/static/syria.geojson.LICENSE.md").is_file()


def test_the_changelog_names_the_packages_version():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "Keep a Changelog" in changelog and "## [Unreleased]" in changelog
    assert re.search(
        rf"^## \[{re.escape(PYPROJECT['project']['version'])}\] - \d{{4}}-\d{{2}}-\d{{2}}$", changelog, re.M
    )
    assert version("aidaccess") == PYPROJECT["project"]["version"]  # what `aidaccess --version` prints


def test_ci_and_pre_commit_run_ruff_and_strict_mypy_on_auth_and_workflow():
    mypy = PYPROJECT["tool"]["mypy"]
    assert mypy["strict"] is True and {"auth", "workflow"} <= set(mypy["files"])
    # No module of the two is let off: an override may silence db/, api/ and aidaccess/ only.
    for override in PYPROJECT["tool"]["mypy"].get("overrides", []):
        assert not any(m.split(".")[0] in ("auth", "workflow") for m in override["module"]), override
    assert set(PYPROJECT["tool"]["ruff"]["lint"]["select"]) >= {"E", "F", "W", "I", "UP", "B"}
    check = subprocess.run(["make", "-n", "check"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "ruff check ." in check and "ruff format --check ." in check and "mypy" in check
    assert re.search(r"^make check$", (ROOT / ".ci/run").read_text(), re.M)
    hooks = (ROOT / ".pre-commit-config.yaml").read_text()
    assert all(f"id: {hook}" in hooks for hook in ("ruff-check", "ruff-format", "mypy"))


def test_make_clean_removes_what_the_readme_says():
    removed = subprocess.run(["make", "-n", "clean"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert re.search(r"rm -rf .*\.venv\b", removed) and re.search(r"rm -rf .*\bvar\b", removed)
    readme = " ".join((ROOT / "README.md").read_text().split())
    said = re.search(r"`make clean` removes ([^.]*)", readme)
    assert said is not None
    assert "`var/`" in said.group(1) and "virtual environment" in said.group(1)
