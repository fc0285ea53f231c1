"""Conditional requests (RFC 9110): ETags, If-None-Match and 304."""

from __future__ import annotations

from starlette.responses import Response


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """If-None-Match uses the weak comparison: W/"x" matches "x"."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    return any(candidate.strip().removeprefix("W/") == opaque for candidate in if_none_match.split(","))


def not_modified(etag: str, headers: dict[str, str]) -> Response:
    return Response(status_code=304, headers={"ETag": etag, **headers})


def expected_version(if_match: str | None) -> int | None:
    """The version an ``If-Match`` names (our ETags are the quoted version); None for none or ``*``."""
    from workflow.errors import PreconditionFailed

    if if_match is None or if_match.strip() == "*":
        return None
    candidate = if_match.split(",")[0].strip().removeprefix("W/").strip('"')
    if not candidate.isdigit():
        raise PreconditionFailed('If-Match must be the ETag you read, such as "3".')
    return int(candidate)


def required_version(if_match: str | None) -> int | None:
    """The version an edit must name, so that two editors never overwrite each other unseen: 428 without
    If-Match. ``*`` (any version) is a client saying, on purpose, that it overwrites whatever is there."""
    from workflow.errors import PreconditionRequired

    if if_match is None:
        raise PreconditionRequired(
            'Send If-Match with the ETag you read (such as "3"): an edit names the version it changes, so that two '
            "people never overwrite each other unseen.",
            header="If-Match",
        )
    return expected_version(if_match)
