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
forbids the action, 412 for a stale `If-Match`, 422 for invalid input (with `errors`
naming each field), 429 with `Retry-After` when throttled.

**Lists** are cursor-paginated: pass `next_cursor` back as `cursor`.

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
    {"name": "pauses", "description": "Humanitarian pauses: proposals, co-chair endorsements, approval, life, calendar."},
    {"name": "violations", "description": "Violations of access and of pauses, and their follow-up."},
    {"name": "events", "description": "The change feed for integrations: poll with a cursor, miss nothing."},
    {"name": "webhooks", "description": "Signed, retried deliveries of the change feed's events."},
    {"name": "audit", "description": "The tamper-evident record of every write."},
    {"name": "operations", "description": "Health, readiness and metrics."},
]
