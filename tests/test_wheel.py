"""The wheel, installed outside the checkout, migrates a new database and serves: the migrations
travel with the package, not only with the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import httpx
import pytest

from db.migrations import head_revision
from tests.server import running_server

pytestmark = pytest.mark.e2e

CHECKOUT = Path(__file__).resolve().parent.parent


def _run(*args: str | Path, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_the_installed_wheel_migrates_and_serves(tmp_path: Path) -> None:
    # Built from a copy: setuptools' build/ directory in a checkout can carry files from before.
    source = tmp_path / "source"
    shutil.copytree(
        CHECKOUT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "dist", "*.egg-info", "var", "__pycache__", ".pytest_cache"
        ),
    )
    wheels = tmp_path / "wheels"
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", wheels, source)
    [wheel] = wheels.glob("aidaccess-*.whl")

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    # The dependencies come from this environment's site-packages as a plain path entry: its .pth
    # files (the editable install that points back at the checkout) are not read from there.
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", wheel)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIDACCESS_") and k != "PYTHONPATH"}
    env.update(
        AIDACCESS_DATABASE_URL=f"sqlite:///{tmp_path / 'fresh.sqlite3'}", AIDACCESS_DATA_DIR=str(tmp_path / "data")
    )

    where = _run(
        python,
        "-c",
        "import aidaccess, api, db.migrations as m; print(aidaccess.__file__, api.__file__, m.ALEMBIC_DIR)",
        cwd=outside,
        env=env,
    ).stdout.split()
    assert all(Path(path).is_relative_to(site) for path in where), where

    command = [str(venv / "bin" / "aidaccess")]
    _run(*command, "db", "upgrade", cwd=outside, env=env)
    with running_server(env, command=command, cwd=outside) as (base, _):
        assert httpx.get(f"{base}/healthz").status_code == 200
        assert httpx.get(f"{base}/readyz").json() == {"status": "ready", "migration": head_revision()}
        # The console's templates, assets and Arabic catalog travel in the wheel too.
        sign_in = httpx.get(f"{base}/sign-in", params={"lang": "ar"})
        assert sign_in.status_code == 200 and 'dir="rtl"' in sign_in.text and "تسجيل الدخول" in sign_in.text
        assert httpx.get(f"{base}/static/console/syria.geojson").status_code == 200
