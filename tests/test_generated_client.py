"""A Python client generated from the committed contract by a standard generator works
against the running app: client credentials, cities, the snapshot, a request created and submitted."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.server import PASSWORD, aidaccess, cli_environment, login, running_server

pytestmark = pytest.mark.e2e
CONTRACT = Path(__file__).resolve().parent.parent / "openapi" / "openapi.json"


@pytest.fixture
def generated_client(tmp_path):
    generator = shutil.which("openapi-python-client", path=str(Path(sys.executable).parent)) or shutil.which(
        "openapi-python-client"
    )
    assert generator, "openapi-python-client is a test dependency"
    result = subprocess.run(
        [
            generator,
            "generate",
            "--path",
            str(CONTRACT),
            "--meta",
            "none",
            "--output-path",
            str(tmp_path / "aidaccess_client"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (tmp_path / "aidaccess_client" / "__init__.py").exists(), result.stdout + result.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("aidaccess_client")
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == "aidaccess_client" or m.startswith("aidaccess_client.")]:
            del sys.modules[name]


def test_a_generated_client_tells_a_short_story(generated_client, fresh_database, tmp_path):
    from aidaccess_client import AuthenticatedClient, Client
    from aidaccess_client.api.access_requests import create_access_request, submit_access_request
    from aidaccess_client.api.auth import create_token, get_me
    from aidaccess_client.api.cities import get_access_snapshot, list_cities
    from aidaccess_client.models import AccessRequestCreate, BodyCreateToken, CargoLineCreate, Contact, Sector

    env = cli_environment(fresh_database.url, tmp_path / "data")
    assert aidaccess(env, "db", "upgrade").returncode == 0
    assert aidaccess(env, "seed", "demo", "--password-stdin", stdin=PASSWORD).returncode == 0
    with running_server(env) as (base, _process):
        admin = login(base, "admin@aidaccess.example")
        organizations = httpx.get(f"{base}/v1/organizations", params={"q": "world food"}, headers=admin).json()["items"]
        account = httpx.post(
            f"{base}/v1/service-accounts",
            json={
                "name": "WFP logistics system",
                "organization_id": organizations[0]["id"],
                "scopes": ["read", "requests:write"],
            },
            headers=admin,
        ).json()

        token = create_token.sync(
            client=Client(base_url=base),
            body=BodyCreateToken(
                grant_type="client_credentials", client_id=account["client_id"], client_secret=account["client_secret"]
            ),
        )
        client = AuthenticatedClient(base_url=base, token=token.access_token)
        me = get_me.sync(client=client)
        assert me.client_id == account["client_id"]
        cities = list_cities.sync(client=client, q="madaya")
        assert [c.pcode for c in cities.items] == ["C2450"]
        snapshot = get_access_snapshot.sync(client=client)
        assert snapshot.count == 14
        departure = datetime.now(UTC) + timedelta(days=4)
        created = create_access_request.sync(
            client=client,
            body=AccessRequestCreate(
                destination_city_id=cities.items[0].id,
                origin_name="Damascus warehouse",
                planned_departure=departure,
                planned_arrival=departure + timedelta(hours=6),
                trucks=8,
                people_targeted=12000,
                contact=Contact(name="Logistics desk"),
                cargo_lines=[CargoLineCreate(sector=Sector.FOOD, item="Food parcels", quantity=2000, unit="parcels")],
            ),
        )
        assert created.status.value == "draft"
        submitted = submit_access_request.sync(client=client, request_id=created.id)
        assert submitted.status.value == "submitted" and submitted.review_due_at is not None
