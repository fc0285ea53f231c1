"""Schemathesis over every operation of the committed contract, as each role in turn and
anonymously (issue 7, item 1): no 5xx, no response that breaks its own schema, no status
code the contract does not declare, no content type or header it does not declare, and
authentication never ignored.

Cases are generated from ``openapi/openapi.json`` (what integrators read), not from the
running app's schema, so a drift between them shows up here too. Half of the UUID path
parameters are swapped for entities that exist, so the fuzzer reaches past 404 into the
workflows. Cases per role are printed at the end of the run (``tests/conftest.py``).

Then stateful: chains of calls over the contract's OpenAPI links (``api/links.py``),
each call by the role the workflow gives it, each chain rolled back before the next. It found
an edit that stored a request without a contact, then failed every read of it with a 500.
"""

from __future__ import annotations

import json
import os
import uuid
import zlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis.stateful import Bundle
from schemathesis import checks
from schemathesis.generation.stateful.state_machine import StepInput
from schemathesis.specs.openapi.schemas import OpenApiSchema
from schemathesis.specs.openapi.stateful import transition as stateful_transition

from auth.roles import OrganizationKind, Role, Scope
from tests.test_access_requests import _body as _request_body
from tests.test_cities import _city_body

CONTRACT = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"
schema = schemathesis.openapi.from_path(CONTRACT)

# Admin last: its calls (a deactivation, a password reset) would end the others' tokens for the rest of the operation.
ROLES = ["anonymous", "partner", "service_account", "coordinator", "co_chair", "observer", "admin"]
CASES: Counter[str] = Counter()
# Deterministic in CI; set AIDACCESS_FUZZ_EXAMPLES higher (and AIDACCESS_FUZZ_RANDOM=1) to dig deeper.
MAX_EXAMPLES = int(os.environ.get("AIDACCESS_FUZZ_EXAMPLES", "6"))
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


@pytest.fixture
def fuzz_world(world, client):
    """One of each entity, so path parameters can name something that exists."""
    ngo = world.org(OrganizationKind.ngo, "Fuzz NGO")
    coordinator_user = world.user(Role.coordinator)
    coordinator = world.headers(coordinator_user)
    partner_user = world.user(Role.partner, ngo)
    admin_user = world.user(Role.admin)
    city = client.post("/v1/cities", json=_city_body(), headers=coordinator).json()["id"]
    partner = world.headers(partner_user)
    request = client.post("/v1/access-requests", json=_request_body(city), headers=partner).json()["id"]
    account = world.service_account(ngo, [Scope.read, Scope.requests_write], admin_user)
    headers = {
        "anonymous": {},
        "admin": world.headers(admin_user),
        "coordinator": coordinator,
        "partner": partner,
        "co_chair": world.headers(world.user(Role.co_chair)),
        "observer": world.headers(world.user(Role.observer)),
        "service_account": world.service_headers(account),
    }
    ids = {
        "city_id": city,
        "request_id": request,
        "organization_id": str(ngo.id),
        "user_id": str(partner_user.id),
        "account_id": account["id"],
    }
    return headers, ids


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    derandomize=not os.environ.get("AIDACCESS_FUZZ_RANDOM"),
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_as_every_role(case, app, fuzz_world):
    """Each generated case is sent as every role in turn, in one world per operation: building a world
    per (operation, role) cost 104 of the suite's 610 s (docs/testing.md)."""
    headers, ids = fuzz_world
    for name, value in (case.path_parameters or {}).items():
        # Swap half the well-formed ids for one that exists; leave malformed ones to be refused.
        if name in ids and _is_uuid(value) and int(str(value)[0], 16) % 2 == 0:
            case.path_parameters[name] = ids[name]
    generated = dict(case.headers or {})
    for role in ROLES:
        case.headers = {**generated, **headers[role]}
        CASES[role] += 1
        try:
            case.call_and_validate(app=app, checks=CHECKS)
        except BaseException as failure:
            failure.add_note(f"as {role}")
            raise


def _is_version(value: str) -> bool:
    return value.startswith('"') and value.endswith('"') and value[1:-1].isdigit()


def _is_uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


# ---- stateful: chains of calls over the links the contract implies --------------------

# Who makes each call in a chain: the role the workflow gives it, so a chain reaches past
# 403 into the states (created -> submitted -> approved -> dispatched -> completed; a pause
# proposed, endorsed, approved, suspended). Every role against every operation is the
# stateless test's job above.
_ADMIN_AREAS = ("/v1/organizations", "/v1/users", "/v1/service-accounts", "/v1/webhooks", "/v1/audit")
_REVIEWS = ("/approve", "/deny", "/request-changes")
STEPS: Counter[str] = Counter()  # statuses of the stateful steps, printed at the end (conftest)


def _actor(method: str, path: str) -> str:
    if path.startswith(_ADMIN_AREAS):
        return "admin"
    if path.startswith("/v1/access-requests") and method in {"POST", "PATCH"}:
        return "coordinator" if path.endswith(_REVIEWS) else "partner"
    if path.endswith("/endorsements"):
        return "co_chair"
    if path.endswith("/acknowledgements") or (method, path) == ("POST", "/v1/violations"):
        return "partner"
    return "coordinator"


def _even(value: object) -> bool:
    """A fixed coin: the same generated value always lands the same way (derandomized runs stay the same)."""
    return zlib.crc32(json.dumps(value, sort_keys=True, default=str).encode()) % 2 == 0


# Schemathesis starts chains only from creates whose references it can resolve by name; it reads
# `destination_city_id` as a "DestinationCity" nothing produces, so the three workflows' creates
# would never start a chain. They are added as starting points here, with schemathesis' own rule
# builder (`stateful_transition`, internal: pinned in constraints.txt).
_CREATES = ("/v1/access-requests", "/v1/pauses", "/v1/violations")
WORKFLOWS = "^/v1/(access-requests|pauses|violations)"


def _chains_machine(source: OpenApiSchema) -> type:
    base = source.as_state_machine()
    # Chains that start by acting on a random id only ever meet 404 (the stateless test has those):
    # they start from a create or a list instead, and reach an entity through a link.
    starts: dict[str, object] = {name: None for name in dir(base) if name.startswith("RANDOM__") and "_id_" in name}
    for path in _CREATES:
        name = f"RANDOM__POST_{path.strip('/').replace('/', '_').replace('-', '_')}"
        starts[name] = stateful_transition(
            name=name,
            target=Bundle("catch_all"),
            precondition=lambda machine: True,
            input=source[path]["POST"].as_strategy().map(StepInput.initial),
        )
    return type("Chains", (base,), starts)


def _valid_body(path: str, ids: dict[str, str]) -> dict | None:
    start = datetime.now(UTC) + timedelta(days=5)  # a pause is approved at least 72 hours before it starts
    if path == "/v1/access-requests":
        return _request_body(ids["city_id"])
    if path == "/v1/pauses":
        return {
            "city_ids": [ids["city_id"]],
            "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=48)).isoformat(),
            "purpose": "Medical evacuations",
            "terms": "No shelling",
        }
    if path == "/v1/violations":
        return {
            "access_request_id": ids["request_id"],
            "category": "impediments_to_entry",
            "occurred_at": datetime.now(UTC).isoformat(),
            "description": "Turned away at the checkpoint",
            "severity": 2,
        }
    if path == "/v1/cities":
        return _city_body()
    return None


def _run_chains(source: OpenApiSchema, app, fuzz_world, connection, *, chains: int, steps: int) -> set[str]:  # noqa: ANN001
    """Runs the chains; the operations that succeeded at least once ("POST /v1/pauses/{pause_id}/approve")."""
    headers, ids = fuzz_world
    transport = {"app": app}
    statuses: Counter[str] = Counter()

    class Chains(_chains_machine(source)):
        # Each chain starts from the same world and leaves nothing behind, so Hypothesis can
        # replay a chain and get the same answers (it insists on that).
        def setup(self) -> None:
            self.scenario = connection.begin_nested()

        def teardown(self) -> None:
            self.scenario.rollback()

        def before_call(self, case):
            # Half of the creates carry a body the workflow accepts, so chains start from real
            # entities; the other half stay as generated (refused with a problem, never a 5xx).
            if case.method == "POST" and isinstance(case.body, dict) and _even(case.body):
                case.body = _valid_body(case.path, ids) or case.body
            # The links carry the ETag read last as If-Match; a generated one is only a stale version
            # (the stateless test sends those), so it goes, and the chain moves on.
            if_match = (case.headers or {}).get("if-match")
            if if_match is not None and not _is_version(if_match):
                del case.headers["if-match"]
            case.headers = {**(case.headers or {}), **headers[_actor(case.method, case.path)]}

        def get_call_kwargs(self, case):
            return transport

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            statuses[f"{case.method} {case.path} {response.status_code}"] += 1
            case.validate_response(
                response, checks=CHECKS, additional_checks=additional_checks, transport_kwargs=kwargs
            )

    try:
        Chains.run(
            settings=settings(
                max_examples=chains,
                stateful_step_count=steps,
                deadline=None,
                database=None,
                derandomize=not os.environ.get("AIDACCESS_FUZZ_RANDOM"),
                suppress_health_check=list(HealthCheck),
            )
        )
    finally:
        STEPS.update(statuses)
    return {key.rsplit(" ", 1)[0] for key in statuses if key.endswith((" 200", " 201", " 204"))}


CHAINS = int(os.environ.get("AIDACCESS_FUZZ_CHAINS", "100"))


def test_chains_over_the_whole_contract(app, fuzz_world, connection):
    """Every operation, over the links the contract declares and those schemathesis infers."""
    succeeded = _run_chains(schema, app, fuzz_world, connection, chains=CHAINS, steps=10)
    # The chains reach past the creates: requests and pauses are acted on through a link. Which
    # entities a derandomized run reaches over the whole contract shifts with anything that changes
    # the process (importing the console's modules moved violations from 57 creates to 12 and no
    # follow-up); the workflow chains below, with fewer ways to go, assert the violations' follow-up.
    for entity in ("{request_id}", "{pause_id}"):
        assert any(entity in operation for operation in succeeded), f"no chain reached an operation on {entity}"


def test_workflow_chains_over_the_contracts_own_links(app, fuzz_world, connection):
    """Access requests, pauses and violations only, over the contract's own links (none inferred):
    fewer ways to go, so chains get deep into the states where convoys and pauses are decided."""
    workflows = schemathesis.openapi.from_path(CONTRACT).include(path_regex=WORKFLOWS)
    workflows.config.phases.stateful.inference.algorithms = []
    succeeded = _run_chains(workflows, app, fuzz_world, connection, chains=CHAINS, steps=15)
    reviews = {f"POST /v1/access-requests/{{request_id}}/{action}" for action in ("approve", "deny", "request-changes")}
    assert succeeded & reviews, "no chain reached the review of a submitted request"
    # An endorsement follows a proposal with the revision its link carries; approvals need every
    # delegation's and come rarer (random runs reach them by the dozen), so the endorsement is asserted.
    for deep in ("POST /v1/pauses/{pause_id}/endorsements", "POST /v1/violations/{violation_id}/verify"):
        assert deep in succeeded, f"no chain reached {deep}"
