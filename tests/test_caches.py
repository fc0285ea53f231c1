"""Every cached representation is the one an uncached rendering gives, whoever asks.

The caches are shared by every caller, so a key that leaves out something the rendering
depends on hands one caller what was rendered for another. Here the cache is warmed by
each caller in turn (a later caller is answered from what an earlier one left, by the
fast path or the endpoint), then each answer is compared, byte for byte, with the same
request rendered from empty caches.
"""

from __future__ import annotations

import pytest

from auth.roles import Role, Scope
from tests.test_convoy_secrecy import APPROVED, NOW, scene  # noqa: F401 - the fixture
from workflow import access

pytestmark = pytest.mark.usefixtures("scene")


def _callers(scene) -> dict[str, dict[str, str]]:  # noqa: F811
    """Every role, and for partners and integrations both the convoys' organization and another."""
    world = scene["world"]
    owner = scene["owner"]
    admin = scene["readers"]["admin"]
    callers = {
        "coordinator": world.headers(scene["coordinator"]),
        "co_chair": world.headers(world.user(Role.co_chair)),
        "partner_owner": world.headers(world.user(Role.partner, owner)),
        "service_owner": world.service_headers(world.service_account(owner, [Scope.read], admin)),
    }
    for name, user in scene["readers"].items():
        callers[name] = world.headers(user)
    callers["service_other"] = world.service_headers(scene["service"])
    return callers


def _paths(scene) -> list[tuple[str, dict[str, str]]]:  # noqa: F811
    city, day_before = scene["city"], APPROVED.isoformat().replace("+00:00", "Z")
    paths = []
    for query in ("", f"?as_of={day_before}"):
        paths.append((f"/v1/cities/{city}/access{query}", {}))
        for accept in ("application/json", "text/csv", "application/geo+json"):
            paths.append((f"/v1/access-snapshot{query}", {"Accept": accept}))
    paths.append(("/v1/access-requests?limit=50", {}))
    return paths


# Problems name their request: the same id each time, so that only what was rendered can differ.
SAME_REQUEST = {"X-Request-ID": "cache-check"}


def _forget(app) -> None:  # noqa: ANN001
    app.state.snapshot_cache.clear()
    app.state.listed_requests.clear()
    access._VERSIONS.clear()


def test_every_cached_representation_is_what_an_uncached_rendering_gives_every_caller(scene):  # noqa: F811
    world = scene["world"]
    app, client = world.client.app, world.client
    scene["clock"].now = NOW
    callers, paths = _callers(scene), _paths(scene)
    _forget(app)
    warmed = {}
    for _ in range(2):  # the second round is answered from the caches the first filled
        for name, headers in callers.items():
            for path, extra in paths:
                response = client.get(path, headers={**headers, **extra, **SAME_REQUEST})
                warmed[(name, path, extra.get("Accept"))] = (response.status_code, response.content)
    answered_from_cache = app.state.metrics.cached_reads.labels("200")._value.get()
    assert answered_from_cache > 0  # the fast path served some of them

    differing = []
    bodies = set()
    for name, headers in callers.items():
        for path, extra in paths:
            _forget(app)
            response = client.get(path, headers={**headers, **extra, **SAME_REQUEST})
            key = (name, path, extra.get("Accept"))
            if (response.status_code, response.content) != warmed[key]:
                differing.append(key)
            bodies.add((path, extra.get("Accept"), response.content))
    assert differing == []
    # The callers do see different things (else the comparison would prove nothing).
    per_path = {}
    for path, accept, body in bodies:
        per_path.setdefault((path, accept), set()).add(body)
    assert all(len(seen) >= 2 for (path, _), seen in per_path.items() if "access-requests" not in path)
