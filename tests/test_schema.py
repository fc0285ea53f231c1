"""Migrations and models agree; migrations go down to nothing and up again; the committed
OpenAPI document is the app's."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlmodel import SQLModel

import db.models  # noqa: F401
from aidaccess.settings import Settings
from api.app import create_app
from db import migrations

OPENAPI_FILE = Path(__file__).resolve().parent.parent / "openapi" / "openapi.json"


# The in-flight index is PostgreSQL's alone (ddl_if); Alembic says, on SQLite, that it cannot compare it.
@pytest.mark.filterwarnings(
    "ignore:autogenerate skipping metadata-specified expression-based index 'ix_access_request_in_flight'"
)
def test_models_and_migrations_do_not_drift(migrated_database):
    with migrated_database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "compare_server_default": True})
        diff = compare_metadata(context, SQLModel.metadata)
    assert diff == [], f"models differ from migrations; write a revision: {diff}"


@pytest.mark.parametrize(
    ("row", "model"),
    [("AccessRequestRow", db.models.AccessRequest), ("CargoLineRow", db.models.CargoLine)],
)
def test_the_request_rows_are_the_tables_columns_in_order_and_type(row, model):
    """A list reads a request's rows as they are and a create writes them so (workflow.access_requests):
    a column the table gains, or a type it changes, must be the row's too."""
    import workflow.access_requests

    hints = typing.get_type_hints(getattr(workflow.access_requests, row))
    assert list(hints) == [column.name for column in db.models.table_of(model).columns]
    assert {name: model.model_fields[name].annotation for name in hints} == hints


def test_migrated_database_is_at_head(migrated_database):
    with migrated_database.engine.connect() as connection:
        assert migrations.current_revision(connection) == migrations.head_revision()


def test_downgrade_to_base_and_upgrade_again(fresh_database):
    migrations.upgrade(fresh_database.url)
    migrations.downgrade(fresh_database.url, "base")
    engine = create_engine(fresh_database.url)
    try:
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
        migrations.upgrade(fresh_database.url)
        assert {"user_account", "audit_event", "organization"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_committed_openapi_matches_the_app():
    app_schema = create_app(Settings(_env_file=None)).openapi()
    committed = json.loads(OPENAPI_FILE.read_text(encoding="utf-8"))
    assert committed == app_schema, (
        "openapi/openapi.json is stale: run 'aidaccess openapi --output openapi/openapi.json'"
    )


def test_the_contract_lists_paths_in_the_documentations_order_whatever_order_routes_match_in():
    """Routers are matched hottest first (api.app); the contract's paths follow TAGS, as they always did."""
    app = create_app(Settings(_env_file=None))
    tags = [tag["name"] for tag in app.openapi_tags]
    first_tags = [next(iter(item.values()))["tags"][0] for item in app.openapi()["paths"].values()]
    assert [tags.index(tag) for tag in first_tags] == sorted(tags.index(tag) for tag in first_tags)
    included = [route.original_router.prefix for route in app.router.routes if hasattr(route, "original_router")]
    assert included[0] == "/v1/access-requests"  # matched first, though the contract lists auth first
    assert list(app.openapi()["paths"])[0] == "/v1/auth/token"


def test_openapi_declares_problems_and_unique_operation_ids():
    schema = create_app(Settings(_env_file=None)).openapi()
    assert schema["openapi"].startswith("3.1")
    operation_ids = []
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            operation_ids.append(operation["operationId"])
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    assert response["content"] == {
                        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                    }, f"{method} {path} {status}"
            if path.startswith("/v1/") and path != "/v1/auth/token" and path != "/v1/auth/revoke":
                assert "401" in operation["responses"], f"{method} {path} does not declare 401"
    assert len(operation_ids) == len(set(operation_ids))
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    schemes = schema["components"]["securitySchemes"]
    assert set(schemes["OAuth2"]["flows"]) == {"password", "clientCredentials"}
    assert schemes["BearerAuth"] == {**schemes["BearerAuth"], "type": "http", "scheme": "bearer"}
    assert schema["paths"]["/v1/me"]["get"]["security"] == [{"OAuth2": []}, {"BearerAuth": []}]


def test_openapi_has_request_examples_and_the_webhooks_section():
    schema = create_app(Settings(_env_file=None)).openapi()
    components = schema["components"]["schemas"]
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            for content in operation.get("requestBody", {}).get("content", {}).values():
                ref = content["schema"].get("$ref", "")
                named = components.get(ref.split("/")[-1], {})
                assert "example" in content or "example" in named, f"{method} {path} has no request example"
    event = schema["webhooks"]["event"]["post"]
    body = event["requestBody"]["content"]["application/json"]["schema"]
    # The Standard Webhooks shape: type, timestamp, and the feed's event as data.
    assert body["required"] == ["type", "timestamp", "data"]
    assert body["properties"]["data"] == {"$ref": "#/components/schemas/EventRead"}
    assert {p["name"] for p in event["parameters"]} == {"webhook-id", "webhook-timestamp", "webhook-signature"}


def test_every_main_response_has_an_example():
    schema = create_app(Settings(_env_file=None)).openapi()
    components = schema["components"]["schemas"]

    def has_example(node: dict) -> bool:
        if "$ref" in node:
            model = components[node["$ref"].split("/")[-1]]
            items = model.get("properties", {}).get("items")
            return "example" in model or (
                items is not None and items.get("type") == "array" and has_example(items["items"])
            )
        if node.get("type") == "array":
            return has_example(node["items"])
        return "example" in node

    missing = [
        f"{method} {path}"
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if operation.get("tags") != ["operations"] and operation["operationId"] != "revokeToken"
        for status, response in operation["responses"].items()
        if status.startswith("2")
        and "schema" in response.get("content", {}).get("application/json", {})
        and not has_example(response["content"]["application/json"]["schema"])
    ]
    assert missing == []


def test_the_convoy_probe_is_answered_by_its_partial_index(migrated_database):
    """The picture version's convoy probe repeats the index's condition verbatim, so both
    engines can answer it from ix_audit_event_convoy instead of walking every request event."""
    from sqlalchemy import text

    from db.hot import convoy_probe_sql

    with migrated_database.engine.connect() as connection:
        probe = convoy_probe_sql(sqlite=connection.dialect.name == "sqlite")
        if connection.dialect.name == "sqlite":
            plan = " ".join(str(row[-1]) for row in connection.execute(text("EXPLAIN QUERY PLAN " + probe)))
        else:
            connection.execute(text("SET LOCAL enable_seqscan = off"))
            plan = " ".join(row[0] for row in connection.execute(text("EXPLAIN " + probe)))
    assert "ix_audit_event_convoy" in plan, plan


def test_an_edit_offers_null_exactly_where_a_value_can_be_removed():
    """Each ...Update schema admits null on a field exactly when the workflow lets an edit remove
    it; a field every record keeps has no null (and no null default) in the contract. A null sent
    anyway still passes validation, so the workflow's 422 names the field (and no constraint meets
    a None: pydantic raises TypeError for that, a 500)."""
    from api.schemas import access_requests as request_schemas
    from api.schemas import admin as admin_schemas
    from api.schemas import cities as city_schemas
    from api.schemas import pauses as pause_schemas
    from workflow import access_requests, admin, cities, pauses

    schemas = create_app(Settings(_env_file=None)).openapi()["components"]["schemas"]
    kept = {
        "AccessRequestUpdate": access_requests.KEPT_ON_EDIT,
        "CityUpdate": cities.KEPT_ON_EDIT,
        "OrganizationUpdate": admin.ORGANIZATION_KEPT_ON_EDIT,
        "UserUpdate": admin.USER_KEPT_ON_EDIT,
        "PauseUpdate": pauses.KEPT_ON_EDIT,
    }

    def admits_null(prop: dict) -> bool:
        return prop.get("type") == "null" or any(admits_null(option) for option in prop.get("anyOf", []))

    for name, fields in kept.items():
        properties = schemas[name]["properties"]
        assert {field for field, prop in properties.items() if not admits_null(prop)} == set(fields), name
        assert all("default" not in properties[field] for field in fields), name
        model = next(
            getattr(m, name) for m in (request_schemas, admin_schemas, city_schemas, pause_schemas) if hasattr(m, name)
        )
        for field in fields:
            assert model.model_validate({field: None}).model_fields_set == {field}, (name, field)


def test_every_operation_parameter_and_field_is_described_for_integrators():
    """The contract carries the product's knowledge where integrators read it (api.docs_text)."""
    schema = create_app(Settings(_env_file=None)).openapi()
    bare = []
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if not operation.get("description"):
                bare.append(f"{method.upper()} {path}")
            bare += [
                f"{method.upper()} {path} parameter {p['name']}"
                for p in operation.get("parameters", [])
                if not p.get("description")
            ]
    for name, component in schema["components"]["schemas"].items():
        bare += [
            f"{name}.{field}"
            for field, definition in (component.get("properties") or {}).items()
            if not definition.get("description")
        ]
    assert bare == []
