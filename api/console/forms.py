"""Forms to the API's own schemas and back: a form's fields become the body the API would receive,
validated by the same model, and each error is put back beside the field it is about."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from api.console.web import N_, parse_local
from workflow.errors import InvalidInput

# Pydantic's error types, said in the page's language (api/console/locale); others keep its English.
ERROR_MESSAGES = {
    "missing": N_("This field is required."),
    "string_too_short": N_("This field is required."),
    "string_pattern_mismatch": N_("This field is required."),
    "int_parsing": N_("Enter a whole number."),
    "int_from_float": N_("Enter a whole number."),
    "float_parsing": N_("Enter a number."),
    "greater_than": N_("Enter a number above zero."),
    "greater_than_equal": N_("Enter zero or more."),
    "less_than_equal": N_("This number is too large."),
    "string_too_long": N_("This text is too long."),
    "uuid_parsing": N_("Choose one from the list."),
    "uuid_type": N_("Choose one from the list."),
    "datetime_from_date_parsing": N_("Enter a date and time."),
    "datetime_parsing": N_("Enter a date and time."),
    "datetime_type": N_("Enter a date and time."),
    "value_error": N_("Enter a valid value."),
    "enum": N_("Choose one from the list."),
    "too_short": N_("Add at least one."),
}


def field_name(location: tuple[Any, ...] | list[Any]) -> str:
    """('cargo_lines', 0, 'quantity') -> 'cargo_lines-0-quantity': the form control's name."""
    return "-".join(str(part) for part in location)


class FormErrors(dict[str, str]):
    """Error messages by form field; ``general`` for those that name none."""

    general: list[str]

    def __init__(self) -> None:
        super().__init__()
        self.general = []

    def __bool__(self) -> bool:
        return len(self) > 0 or bool(self.general)


def from_validation(error: ValidationError, say) -> FormErrors:  # noqa: ANN001
    errors = FormErrors()
    for item in error.errors():
        location = [part for part in item["loc"] if part != "body"]
        message = ERROR_MESSAGES.get(item["type"])
        text = say(message) if message else item["msg"]
        name = field_name(location)
        if name:
            errors.setdefault(name, text)
        else:
            errors.general.append(text)
    return errors


def from_invalid_input(error: InvalidInput) -> FormErrors:
    errors = FormErrors()
    for item in error.errors:
        name = field_name(item.field.removeprefix("body.").split(".")) if item.field.startswith("body.") else ""
        if name:
            errors.setdefault(name, item.message)
        else:
            errors.general.append(item.message)
    if not errors and not errors.general:
        errors.general.append(error.detail)
    return errors


def rows(form: Mapping[str, str], prefix: str, fields: tuple[str, ...]) -> list[dict[str, str]]:
    """The numbered rows a form holds (``prefix-N-field``), in their order, blank rows left out
    (a row whose only values are its choices' defaults, e.g. a sector, is blank)."""
    found: dict[int, dict[str, str]] = {}
    pattern = re.compile(rf"^{re.escape(prefix)}-(\d+)-(\w+)$")
    for key, value in form.items():
        match = pattern.match(key)
        if match and match.group(2) in fields:
            found.setdefault(int(match.group(1)), {})[match.group(2)] = value.strip()
    typed = [name for name in fields if name not in CHOICES]
    return [found[i] for i in sorted(found) if any(found[i].get(name) for name in typed)]


CHOICES = frozenset({"kind", "sector"})


def _blank_none(value: str | None) -> str | None:
    return value if value not in (None, "") else None


ROUTE_FIELDS = ("kind", "name", "controlled_by")
LINE_FIELDS = ("sector", "item", "quantity", "unit")


def _given(body: dict[str, Any]) -> dict[str, Any]:
    """A blank required field is left out, as a client that forgot it would: the model says "missing"."""
    return {key: value for key, value in body.items() if value is not None or key in OPTIONAL}


OPTIONAL = frozenset({"origin_city_id", "origin_name", "notes", "pause_id", "terms", "controlled_by", "phone", "email"})


def request_body(form: Mapping[str, str]) -> dict[str, Any]:
    """An access request form as the JSON body ``POST /v1/access-requests`` takes."""
    return _given(
        {
            "destination_city_id": _blank_none(form.get("destination_city_id")),
            "origin_city_id": _blank_none(form.get("origin_city_id")),
            "origin_name": _blank_none(form.get("origin_name", "").strip()),
            "route": [
                {
                    "kind": r.get("kind", ""),
                    "name": r.get("name", ""),
                    "controlled_by": _blank_none(r.get("controlled_by")),
                }
                for r in rows(form, "route", ROUTE_FIELDS)
            ],
            "planned_departure": parse_local(form.get("planned_departure", "")) or None,
            "planned_arrival": parse_local(form.get("planned_arrival", "")) or None,
            "trucks": form.get("trucks", "").strip() or None,
            "people_targeted": form.get("people_targeted", "").strip() or None,
            "contact": {
                "name": form.get("contact-name", "").strip(),
                "phone": _blank_none(form.get("contact-phone", "").strip()),
                "email": _blank_none(form.get("contact-email", "").strip()),
            },
            "notes": _blank_none(form.get("notes", "").strip()),
            "pause_id": _blank_none(form.get("pause_id")),
            "cargo_lines": [
                _given(
                    {
                        "sector": r.get("sector", ""),
                        "item": r.get("item", ""),
                        "quantity": r.get("quantity") or None,
                        "unit": r.get("unit", ""),
                    }
                )
                for r in rows(form, "cargo_lines", LINE_FIELDS)
            ],
        }
    )


def pause_body(form: Mapping[str, str], city_ids: list[str]) -> dict[str, Any]:
    """A pause form as the body ``POST /v1/pauses`` takes."""
    return _given(
        {
            "city_ids": city_ids,
            "starts_at": parse_local(form.get("starts_at", "")) or None,
            "ends_at": parse_local(form.get("ends_at", "")) or None,
            "purpose": form.get("purpose", "").strip(),
            "terms": _blank_none(form.get("terms", "").strip()),
        }
    )


def validated(model: type[BaseModel], body: dict[str, Any]) -> BaseModel:
    """The body through the API's own model (raises ``ValidationError``, as the API would answer 422)."""
    return model.model_validate(body)
