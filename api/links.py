"""What the generated OpenAPI document cannot know by itself: the ETags responses carry, and
links from each response to the calls that can follow it on the same entity.

Links document the workflows for integrators (a created request can be submitted, a submitted one
approved, an approved one dispatched, ...), carrying the id and the ETag (as `If-Match`) forward,
and let a stateful fuzzer chain real calls (tests/test_fuzz.py). Which of them a caller may make,
and when, is still the policy's and the transition tables' answer: a link says what exists, not
what is allowed now.
"""

from __future__ import annotations

from typing import Any

_ID = "$response.body#/id"
_ETAG = "$response.header.ETag"

# Responses with these bodies carry the entity's version as a strong ETag (send it back as If-Match);
# the access picture and snapshot carry theirs, for If-None-Match, on 200 and 304.
VERSIONED = frozenset({"AccessRequestRead", "PauseRead", "ViolationRead"})
REVALIDATED = frozenset({"getAccessPicture", "getAccessSnapshot"})
_ETAG_HEADER = {
    "ETag": {
        "description": "The version of what this response shows, quoted; send it back as "
        "`If-Match` to change it, or `If-None-Match` to read it again only if it changed.",
        "required": True,
        "schema": {"type": "string", "pattern": '^"[^"]+"$'},
    }
}

# producer operationId -> (status, path parameter of the targets, target operationIds)
WORKFLOW_LINKS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "createOrganization": ("201", "organization_id", ("getOrganization", "updateOrganization")),
    "createUser": ("201", "user_id", ("getUser", "updateUser")),
    "createServiceAccount": ("201", "account_id", ("deleteServiceAccount",)),
    "createWebhook": ("201", "webhook_id", ("listWebhookDeliveries", "deleteWebhook")),
    "createCity": (
        "201",
        "city_id",
        ("getCity", "updateCity", "getAccessPicture", "listDesignations", "createDesignation"),
    ),
    "createAccessRequest": (
        "201",
        "request_id",
        (
            "getAccessRequest",
            "updateAccessRequest",
            "submitAccessRequest",
            "cancelAccessRequest",
            "getAccessRequestHistory",
        ),
    ),
    "updateAccessRequest": ("200", "request_id", ("submitAccessRequest", "cancelAccessRequest")),
    "submitAccessRequest": (
        "200",
        "request_id",
        ("approveAccessRequest", "denyAccessRequest", "requestChangesToAccessRequest", "cancelAccessRequest"),
    ),
    "requestChangesToAccessRequest": (
        "200",
        "request_id",
        ("updateAccessRequest", "submitAccessRequest", "cancelAccessRequest"),
    ),
    "approveAccessRequest": ("200", "request_id", ("dispatchAccessRequest", "cancelAccessRequest")),
    "dispatchAccessRequest": ("200", "request_id", ("completeAccessRequest", "getAccessRequestHistory")),
    "completeAccessRequest": ("200", "request_id", ("getAccessRequestHistory",)),
    "denyAccessRequest": ("200", "request_id", ("getAccessRequestHistory",)),
    "cancelAccessRequest": ("200", "request_id", ("getAccessRequestHistory",)),
    "proposePause": (
        "201",
        "pause_id",
        ("getPause", "revisePause", "endorsePause", "approvePause", "withdrawPause", "recordPauseAcknowledgement"),
    ),
    "revisePause": ("200", "pause_id", ("endorsePause", "approvePause", "withdrawPause")),
    "endorsePause": ("201", "pause_id", ("approvePause", "withdrawPause")),
    "approvePause": ("200", "pause_id", ("suspendPause", "terminatePause", "recordPauseAcknowledgement")),
    "suspendPause": ("200", "pause_id", ("resumePause", "terminatePause")),
    "resumePause": ("200", "pause_id", ("suspendPause", "terminatePause")),
    "reportViolation": ("201", "violation_id", ("getViolation", "verifyViolation", "dismissViolation")),
    "verifyViolation": ("200", "violation_id", ("resolveViolation", "markViolationUnresolved")),
    "markViolationUnresolved": ("200", "violation_id", ("resolveViolation",)),
}


# Parts of a target's body a link fills in from the response (merged into the rest of the body).
LINK_BODIES: dict[str, dict[str, str]] = {
    "endorsePause": {"revision": "$response.body#/revision"},  # a decision names the revision it was made on
}


def add_etags_and_links(schema: dict[str, Any]) -> None:
    """Declares the ETag headers and adds ``WORKFLOW_LINKS`` to the producers' responses; fails
    loudly on a name that is not there."""
    operations = {
        op["operationId"]: op
        for item in schema.get("paths", {}).values()
        for op in item.values()
        if "operationId" in op
    }
    for operation_id, operation in operations.items():
        for status, response in operation.get("responses", {}).items():
            if not status.startswith(("2", "3")):
                continue
            body = response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", "")
            if body.rsplit("/", 1)[-1] in VERSIONED or operation_id in REVALIDATED:
                response.setdefault("headers", {}).update(_ETAG_HEADER)
    for producer, (status, parameter, targets) in WORKFLOW_LINKS.items():
        response = operations[producer]["responses"][status]
        links = response.setdefault("links", {})
        for target in targets:
            if not any(p["name"] == parameter and p["in"] == "path" for p in operations[target].get("parameters", [])):
                raise ValueError(f"{target} takes no path parameter {parameter}")
            link = {
                "operationId": target,
                "parameters": {parameter: _ID},
                "description": f"`{parameter}` is this response's `id`.",
            }
            if any(p["name"] == "if-match" and p["in"] == "header" for p in operations[target].get("parameters", [])):
                link["parameters"]["header.if-match"] = _ETAG
                link["description"] = f"`{parameter}` is this response's `id`; `If-Match` its `ETag`."
            if target in LINK_BODIES:
                link["requestBody"] = LINK_BODIES[target]
                link["description"] += (
                    " The body's " + ", ".join(f"`{k}`" for k in LINK_BODIES[target]) + " come from it too."
                )
            links[target] = link
