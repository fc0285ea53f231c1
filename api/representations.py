"""Turning access pictures into JSON, HXL-tagged CSV and GeoJSON, and choosing among them."""

from __future__ import annotations

import asyncio
import csv
import io
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Iterable
from datetime import UTC
from enum import StrEnum
from threading import Lock
from typing import Any

import orjson

from api.admission import stepped_out
from api.schemas.access import AccessPictureRead, Convoys, Pauses
from workflow.access import AccessPicture
from workflow.errors import DomainError


class SnapshotFormat(StrEnum):
    json = "json"
    hxl = "hxl"
    geojson = "geojson"


MEDIA_TYPES = {
    SnapshotFormat.json: "application/json",
    SnapshotFormat.hxl: "text/csv; charset=utf-8",
    SnapshotFormat.geojson: "application/geo+json",
}
_BY_MEDIA = {
    "application/json": SnapshotFormat.json,
    "text/csv": SnapshotFormat.hxl,
    "application/geo+json": SnapshotFormat.geojson,
}


class NotAcceptable(DomainError):
    pass


def negotiate(requested: SnapshotFormat | None, accept: str | None) -> SnapshotFormat:
    """``?format=`` wins; otherwise the best ``Accept`` match; JSON when anything goes."""
    if requested is not None:
        return requested
    if not accept:
        return SnapshotFormat.json
    ranges = []
    for position, part in enumerate(accept.split(",")):
        media, *params = [p.strip() for p in part.split(";")]
        quality = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    quality = float(param[2:])
                except ValueError:
                    quality = 0.0
        ranges.append((quality, -position, media.lower()))
    for quality, _, media in sorted(ranges, reverse=True):
        if quality <= 0:
            continue
        if media in _BY_MEDIA:
            return _BY_MEDIA[media]
        if media in ("*/*", "application/*"):
            return SnapshotFormat.json
        if media == "text/*":
            return SnapshotFormat.hxl
    raise NotAcceptable("Ask for application/json, text/csv (HXL) or application/geo+json, or use ?format=.")


def picture_read(picture: AccessPicture) -> AccessPictureRead:
    designation = picture.designation
    return AccessPictureRead(
        city=picture.city._asdict(),
        designation=designation.__dict__ if designation else None,
        status_since=picture.status_since,
        days_in_status=picture.days_in_status,
        pauses=Pauses(
            active=[p.__dict__ for p in picture.pauses_active], upcoming=[p.__dict__ for p in picture.pauses_upcoming]
        ),
        convoys=Convoys(
            upcoming_count=picture.convoys_upcoming_count,
            upcoming=None if picture.convoys_upcoming is None else [c.__dict__ for c in picture.convoys_upcoming],
            upcoming_truncated=picture.convoys_upcoming_truncated,
        ),
        last_delivery=picture.last_delivery.__dict__ if picture.last_delivery else None,
        days_since_last_delivery=picture.days_since_last_delivery,
    )


# (header, HXL hashtag, value) for the flat formats, in column order.
FLAT_COLUMNS: list[tuple[str, str]] = [
    ("name", "#loc+name"),
    ("name_ar", "#loc+name+i_ar"),
    ("pcode", "#adm4+code"),
    ("adm1_pcode", "#adm1+code"),
    ("adm1_name", "#adm1+name"),
    ("latitude", "#geo+lat"),
    ("longitude", "#geo+lon"),
    ("population", "#population"),
    ("access_status", "#access+type"),
    ("besieged_by", "#org+besieging"),
    ("severity", "#severity"),
    ("status_since", "#date+start"),
    ("days_in_status", "#indicator+num+days_in_status"),
    ("designation_source", "#meta+source"),
    ("pauses_active", "#indicator+num+pauses_active"),
    ("pauses_upcoming", "#indicator+num+pauses_upcoming"),
    ("convoys_upcoming", "#indicator+num+convoys_upcoming"),
    ("last_delivery_at", "#date+delivery"),
    ("last_delivery_on", "#date+delivery+day"),
    ("days_since_last_delivery", "#indicator+num+days_since_delivery"),
    ("city_id", "#meta+id"),
]


def _iso(value: Any) -> str | None:
    """RFC 3339 in UTC, as every time the API gives out."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value is not None else None


def flat_row(picture: AccessPicture) -> dict[str, Any]:
    city, designation = picture.city, picture.designation
    return {
        "name": city.name,
        "name_ar": city.name_ar,
        "pcode": city.pcode,
        "adm1_pcode": city.adm1_pcode,
        "adm1_name": city.adm1_name,
        "latitude": city.latitude,
        "longitude": city.longitude,
        "population": city.population,
        "access_status": designation.status if designation else None,
        "besieged_by": designation.besieged_by if designation else None,
        "severity": designation.severity if designation else None,
        "status_since": _iso(picture.status_since),
        "days_in_status": picture.days_in_status,
        "designation_source": designation.source if designation else None,
        "pauses_active": len(picture.pauses_active),
        "pauses_upcoming": len(picture.pauses_upcoming),
        "convoys_upcoming": picture.convoys_upcoming_count,
        "last_delivery_at": _iso(picture.last_delivery.delivered_at) if picture.last_delivery else None,
        "last_delivery_on": picture.last_delivery.delivered_on.isoformat() if picture.last_delivery else None,
        "days_since_last_delivery": picture.days_since_last_delivery,
        "city_id": str(city.id),
    }


def render_json(pictures: list[AccessPicture], as_of: Any) -> bytes:
    cities = [picture_read(p).model_dump(mode="json") for p in pictures]
    return orjson.dumps({"as_of": _iso(as_of), "count": len(cities), "cities": cities})


# A spreadsheet runs a cell that begins with one of these as a formula (OWASP, "CSV Injection").
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """Text a spreadsheet would run as a formula, with a leading apostrophe so that it is shown as
    text; numbers (a negative longitude) and everything else as they are."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


class CsvWriter:
    """``csv.writer`` for every CSV the service gives out: each cell through spreadsheet_safe."""

    def __init__(self, buffer: io.StringIO) -> None:
        self._writer = csv.writer(buffer, lineterminator="\r\n")

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([spreadsheet_safe(value) for value in row])


# Excel reads a CSV as UTF-8 (Arabic intact) only when it starts with this.
UTF8_BOM = b"\xef\xbb\xbf"
BOM_DESCRIPTION = "Start the CSV with a UTF-8 byte order mark, so that Excel opens it with Arabic intact."


def render_hxl(pictures: list[AccessPicture]) -> bytes:
    buffer = io.StringIO()
    writer = CsvWriter(buffer)
    writer.writerow([header for header, _ in FLAT_COLUMNS])
    writer.writerow([tag for _, tag in FLAT_COLUMNS])
    for picture in pictures:
        row = flat_row(picture)
        writer.writerow(["" if row[header] is None else row[header] for header, _ in FLAT_COLUMNS])
    return buffer.getvalue().encode("utf-8")


def render_geojson(pictures: list[AccessPicture]) -> bytes:
    features = []
    for picture in pictures:
        properties = flat_row(picture)
        longitude, latitude = properties.pop("longitude"), properties.pop("latitude")
        features.append(
            {
                "type": "Feature",
                "id": properties["city_id"],
                # RFC 7946: longitude first.
                "geometry": {"type": "Point", "coordinates": [longitude, latitude]},
                "properties": properties,
            }
        )
    return orjson.dumps({"type": "FeatureCollection", "features": features})


class BodyCache:
    """Rendered bodies by a key that determines them (a strong ETag; a request's id, version and
    update time), so a hit is exact. Least recently used goes first."""

    def __init__(self, size: int = 64) -> None:
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._size = size
        self._lock = Lock()
        # Renderings in progress, by key: only ever touched on the event loop (get_or_render).
        self._rendering: dict[Hashable, asyncio.Future[Any]] = {}

    async def get_or_render(self, key: Hashable, render: Callable[[], Awaitable[Any]]) -> Any:
        """The body kept for ``key``, or the one ``render`` makes, then kept.

        A miss while the same key is being rendered waits for that rendering instead of making
        its own. A change gives every poller of the snapshot or a picture a new ETag at the same
        moment, and each one's next poll misses: unshared, every one of them rendered the same
        bytes at once, on the core the rest of the traffic needs, and the polls behind them
        waited (docs/performance.md, "Shared renderings").
        If the rendering fails or is cancelled, each waiter renders for itself, so a failure
        reaches every request as its own (a 503 each while the database is down), not one
        request's exception shared. Waiters give their admission places up while they wait, so
        they never fill a process's places behind one rendering."""
        body = self.get(key)
        if body is not None:
            return body
        loop = asyncio.get_running_loop()
        pending = self._rendering.get(key)
        if pending is not None and pending.get_loop() is loop:
            async with stepped_out():  # waiting needs no CPU: the place is the next request's meanwhile
                await asyncio.wait((pending,))  # never raises the rendering's failure; a cancel of this request does
            if not pending.cancelled():
                return pending.result()
        elif pending is None:
            rendering = self._rendering[key] = loop.create_future()
            try:
                body = await render()
            except BaseException:
                rendering.cancel()
                raise
            else:
                self.put(key, body)
                rendering.set_result(body)
                return body
            finally:
                if self._rendering.get(key) is rendering:
                    del self._rendering[key]
        body = await render()  # the shared rendering failed, or belongs to another loop (tests run several)
        self.put(key, body)
        return body

    def get(self, key: Hashable) -> Any:
        with self._lock:
            body = self._items.get(key)
            if body is not None:
                self._items.move_to_end(key)
            return body

    def get_many(self, keys: list[Hashable]) -> list[Any]:
        """Each key's body or None, under one acquisition of the lock (a list of 50 asks for 50)."""
        with self._lock:
            found = [self._items.get(key) for key in keys]
            for key, body in zip(keys, found, strict=True):
                if body is not None:
                    self._items.move_to_end(key)
            return found

    def put(self, key: Hashable, body: Any) -> None:
        with self._lock:
            self._items[key] = body
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
