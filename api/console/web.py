"""The console's plumbing: its cookie, its CSRF tokens, its language, and rendering a page.

The cookie holds one access token that names its login (``sid``), so a page's caller is decided by
``auth.authentication`` exactly as an API caller is: a sign-out, a deactivation, a password reset or
a revocation ends the cookie at the next request. Forms carry a CSRF token bound to that login
(an HMAC of its id under the signing key); the sign-in form, before any login, a double-submit cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import secrets
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from aidaccess import clock
from aidaccess.services import Services
from api.deps import out_of_place
from auth import authentication
from auth.authentication import PictureInputs
from auth.principal import Principal
from auth.roles import Role
from workflow import access

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "aidaccess_console"
SIGN_IN_COOKIE = "aidaccess_sign_in"  # the sign-in form's double-submit CSRF value
LANGUAGE_COOKIE = "aidaccess_lang"
LANGUAGES = ("en", "ar")
RTL = frozenset({"ar"})
# The pages' own policy: scripts and styles from this service only, nothing inline, no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def _translations(language: str) -> Translations:
    """The language's catalog, compiled in memory from the committed .po: no build step."""
    if language == "en":
        return Translations()
    with open(HERE / "locale" / language / "LC_MESSAGES" / "messages.po", "rb") as source:
        catalog = read_po(source, locale=language)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled)


TRANSLATIONS = {language: _translations(language) for language in LANGUAGES}


def _environment(language: str) -> Environment:
    environment = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.install_gettext_translations(TRANSLATIONS[language], newstyle=True)  # type: ignore[attr-defined]
    return environment


ENVIRONMENTS = {language: _environment(language) for language in LANGUAGES}


def N_(message: str) -> str:  # noqa: N802 - gettext's name for "extract this, translate later"
    return message


# Words the data holds, said in the page's language.
LABELS = {
    "draft": N_("Draft"),
    "submitted": N_("Submitted"),
    "changes_requested": N_("Changes requested"),
    "approved": N_("Approved"),
    "denied": N_("Denied"),
    "dispatched": N_("Dispatched"),
    "delivered": N_("Delivered"),
    "partially_delivered": N_("Partially delivered"),
    "turned_back": N_("Turned back"),
    "cancelled": N_("Cancelled"),
    "accessible": N_("Accessible"),
    "hard_to_reach": N_("Hard to reach"),
    "besieged": N_("Besieged"),
    "none": N_("Not designated"),
    "proposed": N_("Proposed"),
    "active": N_("In force"),
    "completed": N_("Ended"),
    "suspended": N_("Suspended"),
    "terminated": N_("Terminated"),
    "withdrawn": N_("Withdrawn"),
    "reported": N_("Reported"),
    "verified": N_("Verified"),
    "dismissed": N_("Dismissed"),
    "resolved": N_("Resolved"),
    "unresolved": N_("Unresolved"),
    "endorse": N_("Endorsed"),
    "object": N_("Objected"),
    "pending": N_("Pending"),
    "food": N_("Food"),
    "health": N_("Health"),
    "nutrition": N_("Nutrition"),
    "wash": N_("Water, sanitation and hygiene"),
    "shelter_nfi": N_("Shelter and non-food items"),
    "protection": N_("Protection"),
    "education": N_("Education"),
    "logistics": N_("Logistics"),
    "checkpoint": N_("Checkpoint"),
    "crossing_point": N_("Crossing point"),
    "partner": N_("Partner"),
    "coordinator": N_("Coordinator"),
    "co_chair": N_("Co-chair"),
    "observer": N_("Observer"),
    "admin": N_("Administrator"),
    "verify": N_("Verify"),
    "dismiss": N_("Dismiss"),
    "resolve": N_("Resolve"),
    "mark_unresolved": N_("Mark unresolved"),
    # OCHA's access-constraint categories.
    "denial_of_needs": N_("Denial of the existence of humanitarian needs"),
    "restricted_access_to_services": N_("Restriction of the population's access to services"),
    "impediments_to_entry": N_("Impediments to entry into the country"),
    "movement_restrictions": N_("Restrictions on movement within the country"),
    "interference_in_implementation": N_("Interference in humanitarian activities"),
    "violence_against_personnel_and_assets": N_("Violence against humanitarian personnel and assets"),
    "hostilities": N_("Active hostilities"),
    "explosive_hazards": N_("Explosive hazards"),
    "physical_environment": N_("Physical environment"),
}


def label(language: str, value: object) -> str:
    text = getattr(value, "value", value)
    message = LABELS.get(str(text))
    return gettext(language, message) if message else str(text)


def gettext(language: str, message: str, **values: Any) -> str:
    """A message of the Python side (a flash, an error's frame) in the page's language."""
    text = TRANSLATIONS[language].gettext(message)
    return text % values if values else text


def language_of(request: Request) -> tuple[str, bool]:
    """The page's language, and whether it was chosen by this request (``?lang=``): remember it."""
    asked = request.query_params.get("lang")
    if asked in LANGUAGES:
        return asked, True
    kept = request.cookies.get(LANGUAGE_COOKIE)
    return (kept if kept in LANGUAGES else "en"), False


def local_time(moment: datetime | None, language: str) -> Markup:
    """A moment in the taskforce's time zone, with its offset shown; left to right in an Arabic page too."""
    if moment is None:
        return Markup("")
    shown = format_datetime(moment, "yyyy-MM-dd HH:mm xxx", tzinfo=clock.zone(), locale=language)
    return Markup('<time datetime="{}" dir="ltr">{}</time>').format(moment.isoformat(), shown)


def local_day(day: date) -> Markup:
    """A calendar day of the taskforce, as ISO 8601 (left to right in an Arabic page too)."""
    return Markup('<time datetime="{0}" dir="ltr">{0}</time>').format(day.isoformat())


def local_input(moment: datetime | None) -> str:
    """A moment as a ``datetime-local`` control's value, in the taskforce's time zone."""
    return moment.astimezone(clock.zone()).strftime("%Y-%m-%dT%H:%M") if moment else ""


def parse_local(value: str) -> datetime | str:
    """A ``datetime-local`` value read in the taskforce's time zone; the text back if it is no moment."""
    try:
        naive = datetime.fromisoformat(value.strip())
    except ValueError:
        return value
    return naive.replace(tzinfo=clock.zone()) if naive.tzinfo is None else naive


# ---- who is asking -------------------------------------------------------------------


class SignInNeeded(Exception):
    """No live login behind the cookie: the page sends the caller to the sign-in form."""


def _bearer(request: Request) -> str | None:
    token = request.cookies.get(SESSION_COOKIE)
    return f"Bearer {token}" if token else None


async def page_principal(request: Request) -> Principal:
    services: Services = request.app.state.services
    try:
        return await authentication.authenticate(
            services.codec, services.hot, _bearer(request), waiting=out_of_place(services)
        )
    except authentication.Refused:
        raise SignInNeeded() from None


async def page_principal_with_picture_inputs(request: Request) -> tuple[Principal, PictureInputs]:
    services: Services = request.app.state.services
    try:
        return await authentication.authenticate_with_picture_inputs(
            services.codec, services.hot, _bearer(request), access.PICTURE_ENTITY_TYPES, waiting=out_of_place(services)
        )
    except authentication.Refused:
        raise SignInNeeded() from None


def csrf_token(services: Services, principal: Principal) -> str:
    key = services.settings.signing_key().encode()
    return hmac.new(key, f"console-csrf|{principal.session_id}".encode(), hashlib.sha256).hexdigest()


def csrf_valid(services: Services, principal: Principal, presented: object) -> bool:
    return isinstance(presented, str) and hmac.compare_digest(presented, csrf_token(services, principal))


def sign_in_token_valid(presented: object, expected: str | None) -> bool:
    """The sign-in form's double submit: the form's value is the cookie's."""
    return bool(expected) and isinstance(presented, str) and hmac.compare_digest(presented.encode(), expected.encode())


def new_sign_in_token() -> str:
    return secrets.token_urlsafe(24)


def secure_cookies(services: Services) -> bool:
    return services.settings.is_production


# ---- pages ---------------------------------------------------------------------------


@dataclass
class Page:
    """What every page's frame needs: the caller, the language, the CSRF token, where we are."""

    request: Request
    principal: Principal | None
    language: str
    remember_language: bool
    csrf: str = ""

    @property
    def role(self) -> str | None:
        return self.principal.role.value if self.principal and self.principal.role else None

    def render(
        self, template: str, status: int = 200, headers: dict[str, str] | None = None, **context: Any
    ) -> HTMLResponse:
        environment = ENVIRONMENTS[self.language]
        body = environment.get_template(template).render(
            page=self,
            me=self.principal,
            lang=self.language,
            dir="rtl" if self.language in RTL else "ltr",
            csrf=self.csrf,
            when=lambda moment: local_time(moment, self.language),
            local_input=local_input,
            day=local_day,
            city_name=self.city_name,
            path=self.request.url.path,
            Role=Role,
            label=lambda value: label(self.language, value),
            **context,
        )
        response = HTMLResponse(body, status_code=status, headers=headers)
        self.finish(response)
        return response

    def city_name(self, city: Any) -> str:
        name_ar = getattr(city, "name_ar", None)
        return name_ar if self.language == "ar" and name_ar else city.name

    def redirect(self, location: str) -> RedirectResponse:
        response = RedirectResponse(location, status_code=303)
        self.finish(response)
        return response

    def finish(self, response: Response) -> None:
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers["Vary"] = "Cookie"
        if self.remember_language:
            response.set_cookie(
                LANGUAGE_COOKIE,
                self.language,
                max_age=365 * 86400,
                httponly=True,
                samesite="strict",
                secure=secure_cookies(self.request.app.state.services),
            )

    def say(self, message: str, **values: Any) -> str:
        return gettext(self.language, message, **values)


def page_for(request: Request, principal: Principal | None) -> Page:
    language, chosen = language_of(request)
    services: Services = request.app.state.services
    return Page(request, principal, language, chosen, csrf_token(services, principal) if principal else "")
