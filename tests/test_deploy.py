"""deploy/: the systemd units verify (systemd-analyze, where systemd is installed), and the service
takes the client's address from a proxy only when configured to trust it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.server import PASSWORD, aidaccess, cli_environment, running_server

ROOT = Path(__file__).resolve().parents[1]
UNITS = sorted((ROOT / "deploy").glob("*.service"))


def _installed_here(unit: Path, into: Path) -> Path:
    """The unit as it would be installed, its program this checkout's (verify checks that it exists)."""
    text_ = unit.read_text().replace(
        "/opt/aidaccess/.venv/bin/aidaccess", str(Path(sys.executable).parent / "aidaccess")
    )
    # The environment file is the host's; here there is none to read.
    text_ = text_.replace(
        "EnvironmentFile=/etc/aidaccess/aidaccess.env", "EnvironmentFile=-/etc/aidaccess/aidaccess.env"
    )
    installed = into / unit.name
    installed.write_text(text_)
    return installed


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_units_verify_and_keep_their_hardening(tmp_path):
    assert [u.name for u in UNITS] == ["aidaccess-worker.service", "aidaccess.service"]
    for unit in UNITS:
        body = unit.read_text()
        for line in (
            "User=aidaccess",
            "ProtectSystem=strict",
            "Restart=on-failure",
            "NoNewPrivileges=true",
            "EnvironmentFile=/etc/aidaccess/aidaccess.env",
            "StateDirectory=aidaccess",
        ):
            assert line in body.splitlines(), (unit.name, line)
    result = subprocess.run(
        ["systemd-analyze", "verify", *(str(_installed_here(u, tmp_path)) for u in UNITS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Warnings (an unknown key, say) go to stderr with exit 0: any output fails it too.
    assert result.returncode == 0 and not result.stderr.strip() and not result.stdout.strip(), result.stderr


@pytest.mark.e2e
@pytest.mark.parametrize("trusted", ["", "127.0.0.1"])
def test_the_client_address_comes_from_a_proxy_only_when_trusted(fresh_database, tmp_path, trusted):
    env = {**cli_environment(fresh_database.url, tmp_path), "AIDACCESS_TRUSTED_PROXIES": trusted}
    assert aidaccess(env, "db", "upgrade").returncode == 0
    assert aidaccess(env, "seed", "demo", "--password-stdin", stdin=PASSWORD).returncode == 0
    with running_server(env) as (base, _process):
        signed = httpx.post(
            f"{base}/v1/auth/token",
            headers={"X-Forwarded-For": "203.0.113.7"},
            data={"grant_type": "password", "username": "observer@aidaccess.example", "password": PASSWORD},
        )
        assert signed.status_code == 200, signed.text
    engine = create_engine(fresh_database.url)
    with engine.connect() as connection:
        recorded = connection.execute(text("SELECT changes FROM audit_event WHERE action = 'signed_in'")).scalar_one()
    engine.dispose()
    address = recorded["client_ip"] if isinstance(recorded, dict) else __import__("json").loads(recorded)["client_ip"]
    # Untrusted, a client could name any address and spread its guesses over all of them.
    assert address == ("203.0.113.7" if trusted else "127.0.0.1")
