"""The board's map: the country outline (api/console/static/syria.geojson, Natural Earth, public
domain) and a marker per city, projected once into an SVG's coordinates."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

OUTLINE = Path(__file__).resolve().parent / "static" / "syria.geojson"
WIDTH = 640
MARGIN = 12


@dataclass(frozen=True)
class Marker:
    city_id: str
    name: str
    x: float
    y: float
    status: str  # accessible, hard_to_reach, besieged, or none


@dataclass(frozen=True)
class Map:
    width: int
    height: int
    outline: str  # the SVG path's d
    markers: list[Marker]


@lru_cache(maxsize=1)
def _outline() -> tuple[list[list[tuple[float, float]]], tuple[float, float, float, float]]:
    geometry = json.loads(OUTLINE.read_text())["geometry"]
    polygons = geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [geometry["coordinates"]]
    rings = [[(lon, lat) for lon, lat in ring] for polygon in polygons for ring in polygon]
    points = [p for ring in rings for p in ring]
    return rings, (
        min(p[0] for p in points),
        max(p[0] for p in points),
        min(p[1] for p in points),
        max(p[1] for p in points),
    )


def _projection() -> tuple[Callable[[float, float], tuple[float, float]], int]:
    """Equirectangular, scaled by the cosine of the middle latitude: true enough at this size."""
    _rings, (west, east, south, north) = _outline()
    squeeze = math.cos(math.radians((south + north) / 2))
    scale = (WIDTH - 2 * MARGIN) / ((east - west) * squeeze)
    height = round((north - south) * scale + 2 * MARGIN)

    def project(lon: float, lat: float) -> tuple[float, float]:
        return round(MARGIN + (lon - west) * squeeze * scale, 1), round(MARGIN + (north - lat) * scale, 1)

    return project, height


@lru_cache(maxsize=1)
def outline_path() -> str:
    project, _height = _projection()
    rings, _bounds = _outline()
    return " ".join(
        "M" + " L".join(f"{x},{y}" for x, y in (project(lon, lat) for lon, lat in ring)) + " Z" for ring in rings
    )


def board_map(pictures: Sequence[Any], name_of: Callable[[Any], str]) -> Map:
    project, height = _projection()
    markers = []
    for picture in pictures:
        x, y = project(picture.city.longitude, picture.city.latitude)
        status = picture.designation.status.value if picture.designation else "none"
        markers.append(Marker(str(picture.city.id), name_of(picture.city), x, y, status))
    return Map(WIDTH, height, outline_path(), markers)
