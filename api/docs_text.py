"""Texts of the OpenAPI document, written for a partner's developer."""

API_DESCRIPTION = """\
The humanitarian access taskforce's API: convoy access requests, the access status of
each city, humanitarian pauses endorsed by the co-chairs, violations and their follow-up.

**Authentication.** `POST /v1/auth/token` (OAuth 2.0): people use the `password` grant,
integrations the `client_credentials` grant. Send the access token as
`Authorization: Bearer <token>`; it lives at most 15 minutes. People also get a
single-use refresh token (`grant_type=refresh_token`).

**Errors** are RFC 9457 `application/problem+json` with a stable `type`
(`urn:aidaccess:problem:...`): 401 without valid credentials, 403 for a role that may
not, 404 for what does not exist or the caller may not see, 409 for a state that
forbids the action, 412 for a stale `If-Match`, 415 for a body not sent as JSON, 422 for
invalid input (with `errors` naming each field), 428 for an edit without `If-Match`, 429 with
`Retry-After` when throttled.

**Concurrency.** Workflow resources carry a `version`, echoed as the `ETag`. An edit (`PATCH`)
must send it back as `If-Match` (428 without; `*` overwrites on purpose). A workflow action
(`POST .../submit`, `.../approve`, ...) is guarded by the state it starts from (409, with the
`allowed_actions`) and accepts `If-Match` too (412 when stale).

**Rates.** Writes carry `RateLimit-Policy` and `RateLimit` (IETF HTTPAPI draft): the burst and
what is left of it.

**Lists** are cursor-paginated: pass `next_cursor` back as `cursor`, or follow the
`Link: <...>; rel="next"` header (RFC 8288).

**Times** are RFC 3339 with an offset; naive times are refused.

Every response carries `X-Request-ID` (yours, if you sent one).
"""

TAGS = [
    {"name": "auth", "description": "Tokens and the caller's identity."},
    {"name": "organizations", "description": "Organizations taking part (admins)."},
    {"name": "users", "description": "People and their roles (admins)."},
    {"name": "service accounts", "description": "Integration credentials (admins)."},
    {"name": "cities", "description": "Cities, their access designations, the access picture and the snapshot."},
    {"name": "access requests", "description": "Convoy access requests, from draft to delivered, per cargo line."},
    {
        "name": "pauses",
        "description": "Humanitarian pauses: proposals, co-chair endorsements, approval, life, calendar.",
    },
    {"name": "violations", "description": "Violations of access and of pauses, and their follow-up."},
    {"name": "events", "description": "The change feed for integrations: poll with a cursor, miss nothing."},
    {"name": "webhooks", "description": "Signed, retried deliveries of the change feed's events."},
    {
        "name": "feeds",
        "description": "Read-only URLs of the snapshot for tools that send no header (HXL Proxy, Power BI, QGIS, Excel).",
    },
    {"name": "audit", "description": "The tamper-evident record of every write."},
    {"name": "operations", "description": "Health, readiness and metrics."},
]


# ---- what the contract says of each operation, parameter and field ------------------------
# Where a route or a model does not describe one itself. tests/test_schema.py fails on any
# operation, parameter or schema field left without a description.

OPERATIONS = {
    "listOrganizations": "Every organization taking part, by name; `kind` filters. Admins only.",
    "createOrganization": "A new organization. Its name is unique (409 otherwise). Admins only; audited.",
    "getOrganization": "One organization. Admins only.",
    "updateOrganization": "Rename an organization or change its kind. Admins only; audited.",
    "listUsers": "People with accounts, filtered by organization, role and whether active. Admins only.",
    "getUser": "One person's account. Admins only.",
    "listServiceAccounts": "Integration credentials (never their secrets). Admins only.",
    "getCity": "One city: names in Latin and Arabic script, aliases, P-codes, coordinates, population.",
    "getAccessRequest": "One access request, its cargo lines and what the caller may do with it now "
    "(`allowed_actions`). Partners and service accounts read their own organization's only; others are 404.",
    "dispatchAccessRequest": "The convoy has left: an approved request becomes `dispatched`. The owning "
    "organization only. Send `If-Match` with the ETag you read.",
    "getAccessRequestHistory": "The request's part of the audit trail, oldest first: each step, who took it, when and "
    "why. Partners get it without the trail's ids and hashes.",
    "getPause": "One pause: its cities and window, the delegations whose endorsement it needs and their decisions on "
    "the current revision, acknowledgements, and what the caller may do now.",
    "withdrawPause": "A proposed pause is withdrawn before approval; it never reaches a calendar. Coordinators only.",
    "resumePause": "A suspended pause is approved again, for what is left of its window. Coordinators only.",
    "getViolation": "One violation, its follow-up and the time to the first response.",
    "resolveViolation": "A verified violation is resolved. Coordinators only.",
    "markViolationUnresolved": "A verified violation is closed as unresolved. Coordinators only.",
    "listWebhooks": "The caller's webhook subscriptions (never their secrets).",
    "deleteWebhook": "Unsubscribe: nothing more is delivered to it, deliveries still pending included. Audited.",
    "listWebhookDeliveries": "The subscription's latest deliveries, newest first, each with its attempts: "
    "status code, error and duration.",
    "getHealth": "The process is up. No authentication, no database.",
    "getReadiness": "The database answers and its schema is at the migrations' head (the head's name in "
    "`migration`); else 503 saying why.",
}

PARAMETERS = {
    ("kind", "query"): "Only organizations of this kind.",
    ("organization_id", "path"): "The organization's id.",
    ("organization_id", "query"): "Only those of this organization.",
    ("role", "query"): "Only people with this role.",
    ("active", "query"): "`true`: active accounts only; `false`: deactivated ones only.",
    ("user_id", "path"): "The user's id.",
    ("account_id", "path"): "The service account's id.",
    ("q", "query"): "Any name or alias, in Latin or Arabic script, or a P-code; case and accents do not matter.",
    ("city_id", "path"): "The city's id.",
    ("city_id", "query"): "Only those concerning this city.",
    ("if-none-match", "header"): "The `ETag` you hold: if it is still current, the answer is a 304 without a body.",
    ("destination_city_id", "query"): "Only requests to this city.",
    ("departure_from", "query"): "Only requests departing at or after this time (RFC 3339 with an offset).",
    ("departure_to", "query"): "Only requests departing before this time (RFC 3339 with an offset).",
    ("overdue", "query"): "`true`: submitted requests past their review deadline; `false`: all others.",
    ("sort", "query"): "`created` (the default), `submitted_at` or `departure`.",
    ("order", "query"): "`asc` (the default) or `desc`.",
    ("idempotency-key", "header"): "Any unique string (a UUID): a retry with the same key and body gets the first "
    "answer, never a second request. Kept 24 hours.",
    ("request_id", "path"): "The access request's id.",
    ("status", "query"): "One or more statuses.",
    ("token", "query"): "The calendar token from `POST /v1/pauses/calendar-token`.",
    ("pause_id", "path"): "The pause's id.",
    ("pause_id", "query"): "Only those concerning this pause.",
    ("category", "query"): "One or more of the nine OCHA access-constraint categories.",
    ("unanswered", "query"): "`true`: no coordinator has acted yet; `false`: one has.",
    ("violation_id", "path"): "The violation's id.",
    ("types", "query"): "Only events of these types (`access_request.approved`, ...).",
    ("limit", "query"): "At most this many events (1 to 500; 100 by default).",
    ("webhook_id", "path"): "The subscription's id.",
    ("token_id", "path"): "The feed token's id (from `GET /v1/feed-tokens`).",
    ("entity_type", "query"): "Only events about this kind of thing (`access_request`, `pause`, ...).",
    ("entity_id", "query"): "Only events about this thing.",
}

# Field descriptions by name; "Schema.field" where a name means something of its own there.
FIELDS = {
    "id": "This {thing}'s id.",
    "items": "This page's {thing} items.",
    "next_cursor": "Pass it as `cursor` for the next page; null on the last one.",
    "created_at": "When it was created.",
    "updated_at": "When it last changed.",
    "version": "Increases with every change; the `ETag` is its value, and writes take it back in `If-Match`.",
    "organization_id": "The organization's id.",
    "name": "Its name.",
    "kind": "Its kind.",
    "status": "Its state.",
    "reason": "Why, in words.",
    "note": "A remark kept in the audit trail.",
    "allowed_actions": "What the caller may do with it now: the actions the state allows and the caller's role permits.",
    "last_reason": "The reason given with its latest change of state.",
    "access_request_id": "The access request it concerns.",
    "pause_id": "The humanitarian pause it concerns or relies on.",
    "city_id": "The city's id.",
    "city_ids": "The cities the pause covers.",
    "destination_city_id": "The city the convoy goes to.",
    "origin_city_id": "The city the convoy leaves from, if it is one of the cities; else see `origin_name`.",
    "origin_name": "Where the convoy leaves from when that is not one of the cities (a crossing point).",
    "route": "The route, in order: crossing points and checkpoints, and who controls each.",
    "planned_departure": "When the convoy is planned to leave (RFC 3339).",
    "planned_arrival": "When the convoy is planned to arrive (RFC 3339).",
    "trucks": "How many trucks.",
    "people_targeted": "How many people the aid is for.",
    "people_reached": "How many people the aid reached, as reported with the outcome.",
    "contact": "Who to call about this convoy.",
    "notes": "Free text for the reviewers.",
    "cargo_lines": "What the convoy carries, a line per item, with the quantities requested, approved, removed and delivered.",
    "submitted_at": "When it was submitted for review (the latest time).",
    "review_due_at": "When a reply to the submission is due (working days in the taskforce's time zone).",
    "overdue": "Submitted and past its review deadline.",
    "decided_at": "When it was decided.",
    "approved_at": "When it was approved.",
    "dispatched_at": "When the convoy left.",
    "completed_at": "When the convoy's outcome happened, as reported.",
    "cancelled_at": "When it was cancelled.",
    "suspended_at": "When it was last suspended.",
    "terminated_at": "When it was ended early.",
    "withdrawn_at": "When it was withdrawn before approval.",
    "outcome": "`delivered`, `partially_delivered` or `turned_back`.",
    "sector": "The humanitarian cluster the item belongs to.",
    "item": "What is carried.",
    "quantity": "How much was requested, in `unit`.",
    "unit": "The unit of the quantities (kits, tonnes, ...).",
    "line_id": "The cargo line's id.",
    "approved_quantity": "How much of the line was approved (the request, or less).",
    "delivered_quantity": "How much of the line was delivered.",
    "removed_quantity": "How much of the line was removed on the way (at a checkpoint).",
    "removed_at": "Where it was removed.",
    "removal_reason": "Why it was removed, as reported.",
    "name_ar": "The name in Arabic script.",
    "aliases": "Other names and spellings it is known by.",
    "pcode": "OCHA's community P-code (`C1007`).",
    "adm1_pcode": "The governorate's P-code (`SY02`).",
    "adm1_name": "The governorate's name.",
    "latitude": "Degrees north (WGS 84).",
    "longitude": "Degrees east (WGS 84).",
    "population": "The latest population estimate.",
    "besieged_by": "For a besieged city: by whom.",
    "severity": "0 (none) to 5 (extreme).",
    "effective_from": "From when it is in force.",
    "source": "Where the information comes from.",
    "decided_by_id": "The coordinator who decided it.",
    "decided_by_name": "The name of the coordinator who decided it.",
    "corrects_id": "The designation this one corrects, if it is a correction.",
    "recorded_at": "When it was recorded.",
    "starts_at": "When the pause starts (RFC 3339).",
    "ends_at": "When the pause ends (RFC 3339).",
    "purpose": "What the pause is for.",
    "terms": "The terms the parties are asked to keep.",
    "revision": "Increases with every revision of a proposal; endorsements count for the current one only.",
    "delegations": "The co-chair delegations whose endorsement the pause needs, and each one's decision on the current revision.",
    "acknowledgements": "The parties' answers to the pause, as recorded by coordinators.",
    "display_status": "What readers see: an approved pause is `approved` before it starts, `active` while it runs, `completed` after.",
    "decision": "`endorse` or `object`.",
    "comment": "The delegation's words with its decision.",
    "decided_by": "Who decided for the delegation.",
    "party": "The party to the conflict.",
    "response": "Its answer: `accepted`, `rejected` or `no_response`.",
    "responded_at": "When it answered.",
    "through": "How the answer came (the channel).",
    "category": "One of the nine OCHA access-constraint categories.",
    "occurred_at": "When it happened.",
    "place": "Where it happened.",
    "description": "What happened.",
    "reporter_organization_id": "The organization that reported it.",
    "first_response_at": "When a coordinator first acted on it.",
    "email": "The email address.",
    "full_name": "The person's full name.",
    "role": "The person's role: `partner`, `coordinator`, `co_chair`, `observer` or `admin`.",
    "active": "Whether the account may sign in.",
    "client_id": "The integration's client id, for the `client_credentials` grant.",
    "scopes": "What the service account may do: `read`, and `requests:write` when granted.",
    "token": "The token.",
    "expires_at": "When it stops working.",
    "access_token": "Send it as `Authorization: Bearer <token>`.",
    "token_type": "Always `bearer`.",
    "event_types": "The event types wanted (`access_request.approved`, ...).",
    "url": "Where deliveries are POSTed: https (plain http to this machine only, in development).",
    "failing_since": "When deliveries to it began to fail, if they are failing.",
    "event_id": "The event's id, as in the change feed.",
    "event_type": "The event's type.",
    "attempts": "Each attempt to deliver it.",
    "next_attempt_at": "When it will be tried again, if it is not delivered yet.",
    "delivered_at": "When it was delivered.",
    "attempted_at": "When it was tried.",
    "status_code": "The HTTP status the receiver answered with, if it answered.",
    "error": "What went wrong, if it did not answer.",
    "duration_ms": "How long the attempt took.",
    "entity_type": "The kind of thing it is about (`access_request`, `pause`, ...).",
    "entity_id": "The id of the thing it is about.",
    "type": "The event's type (`access_request.approved`, ...).",
    "action": "What was done.",
    "actor_type": "`user`, `service_account` or `system`.",
    "actor_id": "Who did it.",
    "actor_label": "Who did it, by email or client id.",
    "from_state": "The state before, for a change of state.",
    "to_state": "The state after, for a change of state.",
    "changes": "What changed.",
    "request_id": "The HTTP request that did it (`X-Request-ID`).",
    "prev_hash": "The hash of the event before it in the chain.",
    "hash": "SHA-256 of the previous hash and this event's canonical JSON.",
    "count": "How many.",
    "total": "How many in all.",
    "organization": "The caller's organization.",
    "organization_name": "The organization's name.",
    "city": "The city.",
    "cities": "Every city's access picture.",
    "pauses": "Pauses in force and to come.",
    "upcoming": "Approved pauses yet to start.",
    "convoys": "Upcoming approved convoys: their number, and those the caller may read.",
    "last_delivery": "The latest delivery before the moment asked, if any.",
    "days_since_last_delivery": "Calendar days (the taskforce's time zone) since the last delivery.",
    "phone": "A telephone number.",
    "controlled_by": "Who controls it.",
    "href": "Where to do it.",
    "method": "The HTTP method to use.",
    "message": "What is wrong with the field.",
    "grant_type": "`password` (people), `client_credentials` (integrations) or `refresh_token`.",
    "username": "For the `password` grant: the email address.",
    "password": "For the `password` grant.",
    "refresh_token": "For the `refresh_token` grant: the refresh token last issued (each is single-use).",
    "client_secret": "For the `client_credentials` grant.",
    "scope": "Not used: a service account gets its granted scopes.",
    "token_type_hint": "`access_token` or `refresh_token`, if known.",
    "Pauses.active": "Pauses in force at the moment asked.",
    "UserRead.active": "Whether the account may sign in.",
    "RouteStep.kind": "`crossing_point` or `checkpoint`.",
    "RouteStep.name": "The place's name.",
    "MeRead.kind": "`user` or `service_account`.",
    "MeRead.name": "The person's or the integration's name.",
    "Contact.name": "The person to call.",
    "DelegationDecision.name": "The delegation's name.",
    "ConvoySummary.organization_name": "The requesting organization's name.",
    "RequestCount.status": "The requests' status.",
    "RequestCount.count": "How many requests have this status and destination.",
    "AccessSnapshotRead.count": "How many cities.",
    "DesignationCreate.status": "`accessible`, `hard_to_reach` or `besieged`.",
    "DesignationRead.status": "`accessible`, `hard_to_reach` or `besieged`.",
    "DesignationSummary.status": "`accessible`, `hard_to_reach` or `besieged`.",
    "DesignationView.status": "`accessible`, `hard_to_reach` or `besieged`.",
    "DesignationRead.reason": "Why the city's access changed.",
    "DesignationView.reason": "Why the city's access changed.",
    "DesignationCreate.reason": "Why the city's access changed.",
    "AuditEventRead.reason": "The reason given with the action, if any.",
    "Problem.type": "A stable URN naming the kind of problem (`urn:aidaccess:problem:...`).",
    "Problem.title": "The kind of problem, in words.",
    "Problem.status": "The HTTP status.",
    "Problem.detail": "This occurrence, in words.",
    "Problem.instance": "The path it happened at.",
    "Problem.request_id": "The request's id (`X-Request-ID`): quote it when asking for help.",
    "Problem.errors": "For invalid input: each field and what is wrong with it.",
    "Problem.status_code": "The HTTP status.",
    "ViolationCreate.severity": "0 (none) to 5 (grave), as the reporter judges it.",
    "ViolationRead.severity": "0 (none) to 5 (grave), as the reporter judged it.",
    "AccessRequestCounts.items": "A count per status and destination city.",
    "EndorsementRead.organization_id": "The delegation's organization.",
    "DelegationDecision.organization_id": "The delegation's organization.",
    "DelegationDecision.decided_at": "When the delegation decided on the current revision, if it has.",
    "ServiceAccountCreate.organization_id": "The organization the integration acts for.",
    "UserCreate.organization_id": "The person's organization.",
    "UserRead.organization_id": "The person's organization.",
    "UserUpdate.organization_id": "Move the person to this organization.",
    "AccessRequestRead.organization_id": "The requesting organization.",
    "ConvoySummary.organization_id": "The requesting organization.",
    "AffectedRequest.organization_id": "The requesting organization.",
    "AuditEventRead.organization_id": "The organization of whoever did it.",
    "AccessRequestRead.status": "Where the request is in its workflow.",
    "AffectedRequest.status": "Where the request is in its workflow.",
    "PauseSummaryRead.status": "The stored state; see `display_status` for what readers see.",
    "ViolationRead.status": "`reported`, `verified`, `dismissed`, `resolved` or `unresolved`.",
    "CalendarTokenRead.token": "Pass it as `token` to the calendar feed; it lasts the days configured.",
    "Body_revokeToken.token": "The refresh token (or calendar token) to revoke.",
    "Completion.outcome": "`delivered`, `partially_delivered` or `turned_back`.",
}


def _thing(schema_name: str) -> str:
    """'AccessRequestRead' -> 'access request'; 'CityPage' -> 'city'."""
    for suffix in ("Read", "Create", "Created", "Update", "Summary", "Page", "View", "Ref"):
        if schema_name.endswith(suffix) and schema_name != suffix:
            schema_name = schema_name[: -len(suffix)]
            break
    words, current = [], ""
    for char in schema_name:
        if char.isupper() and current:
            words.append(current)
            current = ""
        current += char.lower()
    return " ".join([*words, current])


def describe(schema: dict) -> None:
    """Fill in the descriptions an operation, parameter or schema field lacks, from the tables above."""
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "operationId" not in operation:
                continue
            if not operation.get("description") and operation["operationId"] in OPERATIONS:
                operation["description"] = OPERATIONS[operation["operationId"]]
            for parameter in operation.get("parameters", []):
                if not parameter.get("description") and (parameter["name"], parameter["in"]) in PARAMETERS:
                    parameter["description"] = PARAMETERS[(parameter["name"], parameter["in"])]
    for name, component in schema.get("components", {}).get("schemas", {}).items():
        for field, definition in (component.get("properties") or {}).items():
            if definition.get("description"):
                continue
            text = FIELDS.get(f"{name}.{field}") or FIELDS.get(field)
            if text is not None:
                definition["description"] = text.format(thing=_thing(name))
