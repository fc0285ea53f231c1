"""The console: server-rendered pages on the same accounts, through the same workflow and policy
as the API. A page reads and writes through ``workflow``; what a caller may do is what the
workflow's ``allowed_actions`` say; a refusal is the workflow's, shown in words."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from sqlmodel import Session
from starlette.responses import Response

from aidaccess.clock import local_date, utcnow
from aidaccess.services import Services
from api.conditional import etag_matches
from api.console import STATIC_PREFIX, forms
from api.console.mapping import board_map
from api.console.web import (
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    Page,
    SignInNeeded,
    csrf_valid,
    local_input,
    new_sign_in_token,
    page_for,
    page_principal,
    page_principal_with_picture_inputs,
    secure_cookies,
    sign_in_token_valid,
)
from api.deps import count_write, run_read, run_write
from api.representations import picture_read
from api.routers.access_requests import access_request_read as request_read
from api.routers.pauses import pause_read
from api.schemas.access_requests import AccessRequestCreate, AccessRequestUpdate, Approval, Reason
from api.schemas.pauses import PauseCreate, PauseUpdate
from api.sign_ins import signed_in
from auth.policy import Action as PolicyAction
from auth.policy import (
    RequestAction,
    can,
    can_act_on_request,
    can_count_requests,
    can_list_requests,
    can_list_violations,
)
from auth.principal import Principal
from auth.roles import Role
from workflow import access, audit, identity, pauses, request_lists, violations
from workflow import access_requests as requests
from workflow.access_requests import RequestStatus, Sector
from workflow.cities import city_choices, list_designations
from workflow.common import PageRequest
from workflow.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound, PreconditionFailed
from workflow.errors import Throttled as WriteThrottled
from workflow.request_lists import RequestFilters, SortKey
from workflow.violations import ViolationAction, ViolationFilters

router = APIRouter(include_in_schema=False)
T = TypeVar("T")
# Part of the board's ETag: a change to the page's templates must not be answered with a 304.
PAGE_GENERATION = "1"
LISTED = 100


# ---- the frame -------------------------------------------------------------------------


async def _signed_in_page(request: Request) -> Page:
    principal = await page_principal(request)
    request.state.console_principal = principal  # for a refusal answered outside the route (Throttled)
    return page_for(request, principal)


def _services(request: Request) -> Services:
    return request.app.state.services


class Throttled(Exception):
    def __init__(self, wait: int) -> None:
        self.wait = wait


async def _checked_form(request: Request, page: Page) -> dict[str, str] | None:
    """The posted form if its CSRF token is this login's, else None (the caller answers 403).
    A write counts against the caller's write rate as an API write does (api.deps.count_write)."""
    form = await request.form()
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    if page.principal is None or not csrf_valid(_services(request), page.principal, fields.get("csrf")):
        return None
    limiter = request.app.state.write_limiter
    if limiter is not None:
        try:
            count_write(request, limiter, page.principal.id)
        except WriteThrottled as refused:
            raise Throttled(refused.retry_after) from None  # answered as a page, not a problem
    return fields


def _refused_csrf(page: Page) -> Response:
    return page.render(
        "error.html",
        status=403,
        title=page.say("Refused"),
        message=page.say(
            "This form has expired or did not come from this site. Nothing was changed. Open the page again and retry."
        ),
    )


def _failure(page: Page, error: DomainError) -> Response:
    status = {NotFound: 404, Forbidden: 403, Conflict: 409, PreconditionFailed: 412, InvalidInput: 422}.get(
        type(error), 400
    )
    return page.render("error.html", status=status, title=page.say("Not done"), message=error.detail)


async def _read(request: Request, fn: Callable[[Session], T]) -> T:
    return await run_read(request, fn)


async def _write(request: Request, fn: Callable[[Session], T]) -> T:
    return await run_write(request, fn)


def install_console(app: FastAPI) -> None:
    app.mount(STATIC_PREFIX, StaticFiles(directory=Path(__file__).resolve().parent / "static"), name="console-assets")
    app.include_router(router)

    async def to_sign_in(request: Request, _exc: SignInNeeded) -> Response:
        target = request.url.path if request.method == "GET" else "/"
        page = page_for(request, None)
        response = page.redirect(f"/sign-in?next={quote(target)}")
        response.delete_cookie(SESSION_COOKIE)
        return response

    async def throttled(request: Request, exc: Throttled) -> Response:
        page = page_for(request, getattr(request.state, "console_principal", None))
        return page.render(
            "error.html",
            status=429,
            headers={"Retry-After": str(exc.wait)},
            title=page.say("Not done"),
            message=page.say(
                "Too many changes from this account; nothing was saved. Wait %(seconds)s seconds and retry.",
                seconds=exc.wait,
            ),
        )

    app.add_exception_handler(SignInNeeded, to_sign_in)
    app.add_exception_handler(Throttled, throttled)


# ---- signing in and out --------------------------------------------------------------------


# A path of this site and nothing else: a browser reads "/\t/host", "/\\host" or "//host" as another site.
_SAFE_PATH = re.compile(r"/(?![/\\])[A-Za-z0-9/_.~%?=&-]*")


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: only a path of this site (never an open redirect)."""
    return target if target and _SAFE_PATH.fullmatch(target) else "/"


def _sign_in_form(
    page: Page, *, status: int = 200, error: str | None = None, username: str = "", next_path: str = "/"
) -> Response:
    token = new_sign_in_token()
    response = page.render(
        "sign_in.html", status=status, error=error, username=username, sign_in_token=token, next_path=next_path
    )
    response.set_cookie(
        SIGN_IN_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=secure_cookies(_services(page.request)),
        path="/sign-in",
        max_age=3600,
    )
    return response


@router.get("/sign-in")
async def sign_in_page(request: Request) -> Response:
    return _sign_in_form(page_for(request, None), next_path=_safe_next(request.query_params.get("next")))


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    page = page_for(request, None)
    form = await request.form()
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    if not sign_in_token_valid(fields.get("csrf"), request.cookies.get(SIGN_IN_COOKIE)):
        return _sign_in_form(page, status=403, error=page.say("This form has expired. Please sign in again."))
    username, password = fields.get("username", "").strip(), fields.get("password", "")
    next_path = _safe_next(fields.get("next"))
    if not username or not password:
        return _sign_in_form(
            page, status=422, error=page.say("Enter your email and password."), username=username, next_path=next_path
        )
    services = _services(request)
    config = services.identity
    client_ip = request.client.host if request.client else None
    lifetime = timedelta(hours=services.settings.console_session_hours)
    result = await signed_in(
        request,
        config,
        password,
        read=lambda session: identity.stored_password(
            session=session, config=config, email=username, client_ip=client_ip
        ),
        write=lambda session, checked: identity.login_with_password(
            session=session, config=config, checked=checked, password=password, client_ip=client_ip, console=lifetime
        ),
    )
    if isinstance(result, identity.AuthRefusal):
        if result.retry_after is not None:
            response = _sign_in_form(
                page,
                status=result.status,
                username=username,
                next_path=next_path,
                error=page.say("Too many attempts. Wait a moment and try again."),
            )
            response.headers["Retry-After"] = str(result.retry_after)
            return response
        return _sign_in_form(
            page,
            status=401,
            username=username,
            next_path=next_path,
            error=page.say("The email or password is wrong, or the account cannot sign in."),
        )
    response = page.redirect(next_path)
    response.set_cookie(
        SESSION_COOKIE,
        result.access_token,
        max_age=result.expires_in,
        httponly=True,
        samesite="strict",
        secure=secure_cookies(services),
    )
    response.delete_cookie(SIGN_IN_COOKIE, path="/sign-in")
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    page = await _signed_in_page(request)
    if await _checked_form(request, page) is None:
        return _refused_csrf(page)
    principal = page.principal
    await _write(request, lambda session: identity.sign_out(session=session, actor=principal))
    response = page.redirect("/sign-in")
    response.delete_cookie(SESSION_COOKIE)
    return response


# ---- the board -----------------------------------------------------------------------------


def _board_etag(principal: Principal, inputs: Any, language: str) -> str:
    version = access.picture_version(actor=principal, inputs=inputs, as_of=None, scope="console:board")
    # The page shows the caller's name and carries its login's CSRF token: both are in its tag.
    material = (
        f"{PAGE_GENERATION}|{version}|{language}|{principal.session_id}|{principal.name}|{principal.organization_name}"
    )
    return '"' + hashlib.sha256(material.encode()).hexdigest()[:32] + '"'


@router.get("/")
async def board(request: Request) -> Response:
    principal, inputs = await page_principal_with_picture_inputs(request)
    page = page_for(request, principal)
    etag = _board_etag(principal, inputs, page.language)
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if etag_matches(request.headers.get("if-none-match"), etag):
        response = Response(status_code=304, headers=headers)
        page.finish(response)
        return response

    def read(session: Session) -> tuple[list[Any], list[tuple[str, uuid.UUID, int]] | None]:
        snapshot = access.access_snapshot(session=session, actor=principal)
        counts = None
        if principal.role == Role.observer and can_count_requests(principal):
            counts = request_lists.count_access_requests(session=session, actor=principal, filters=RequestFilters())
        return snapshot, counts

    snapshot, counts = await _read(request, read)
    pictures = [picture_read(p) for p in snapshot]
    names = {p.city.id: page.city_name(p.city) for p in pictures}
    count_rows = None
    if counts is not None:
        count_rows = sorted(
            ((names.get(city, "?"), status, n) for status, city, n in counts), key=lambda row: (row[0], row[1])
        )
    # The day, not the minute: a 304 keeps the page for as long as its version holds, which is the
    # taskforce's day at most (workflow.access.picture_version).
    return page.render(
        "board.html",
        headers=headers,
        pictures=pictures,
        as_of=local_date(utcnow()),
        map=board_map(pictures, page.city_name),
        counts=count_rows,
    )


@router.get("/cities/{city_id}")
async def city_page(request: Request, city_id: str) -> Response:
    page = await _signed_in_page(request)
    principal = page.principal
    city_uuid = _uuid(city_id)
    if city_uuid is None:
        return _failure(page, NotFound("No such city."))

    def read(session: Session) -> dict[str, Any]:
        picture = access.access_picture(session=session, actor=principal, city_id=city_uuid)
        history, _more = list_designations(
            session=session, actor=principal, city_id=city_uuid, page=PageRequest(limit=200)
        )
        listed, _ = pauses.list_pauses(session=session, actor=principal, city_id=city_uuid, limit=LISTED)
        now = utcnow()
        return {
            "picture": picture_read(picture),
            "history": history,
            "pauses": [
                (p, pauses.display_status(p, now)) for p in sorted(listed, key=lambda p: p.starts_at, reverse=True)
            ],
        }

    try:
        found = await _read(request, read)
    except DomainError as error:
        return _failure(page, error)
    return page.render("city.html", **found)


# ---- access requests -------------------------------------------------------------------------


def _cities(session: Session) -> list[Any]:
    return city_choices(session)


def _usable_pauses(session: Session, principal: Principal) -> list[Any]:
    listed, _ = pauses.list_pauses(
        session=session, actor=principal, statuses=[pauses.PauseStatus.approved], limit=LISTED
    )
    now = utcnow()
    return [p for p in listed if p.ends_at > now]


@router.get("/requests")
async def request_list(request: Request) -> Response:
    page = await _signed_in_page(request)
    principal = page.principal
    if not can_list_requests(principal):
        return _failure(page, Forbidden(page.say("Your role reads counts only: see the board.")))
    status = request.query_params.get("status")
    statuses = (RequestStatus(status),) if status in RequestStatus.__members__ else ()

    def read(session: Session) -> dict[str, Any]:
        found, more = request_lists.list_access_requests(
            session=session,
            actor=principal,
            filters=RequestFilters(statuses=statuses),
            page=PageRequest(limit=LISTED),
            sort=SortKey.created,
            descending=True,
        )
        names = {c.id: c for c in _cities(session)}
        now = utcnow()
        return {
            "items": [(r, names.get(r.destination_city_id), requests.is_overdue(r, now)) for r in found],
            "more": more,
        }

    found = await _read(request, read)
    return page.render(
        "requests.html",
        status_filter=status or "",
        statuses=list(RequestStatus),
        may_create=_may_create(principal),
        **found,
    )


@router.get("/queue")
async def review_queue(request: Request) -> Response:
    page = await _signed_in_page(request)
    principal = page.principal
    if principal.role != Role.coordinator:
        return _failure(page, Forbidden(page.say("The review queue is the coordinators'.")))

    def read(session: Session) -> dict[str, Any]:
        found, more = request_lists.list_access_requests(
            session=session,
            actor=principal,
            filters=RequestFilters(statuses=(RequestStatus.submitted,)),
            page=PageRequest(limit=LISTED),
            sort=SortKey.submitted_at,
        )
        names = {c.id: c for c in _cities(session)}
        now = utcnow()
        items = [(r, names.get(r.destination_city_id), requests.is_overdue(r, now)) for r in found]
        # Overdue first, then by when each is due: the oldest submission is the nearest deadline.
        items.sort(key=lambda item: (not item[2], item[0].review_due_at or now))
        return {"items": items, "more": more}

    return page.render("queue.html", **await _read(request, read))


def _may_create(principal: Principal) -> bool:
    return bool(can_act_on_request(principal, RequestAction.create, principal.organization_id))


def _empty_request_form() -> dict[str, Any]:
    return {"route": [{}], "cargo_lines": [{}], "contact": {}}


def _form_values(form: dict[str, str]) -> dict[str, Any]:
    """What the page shows again after an error or an added row: the form as typed."""
    values: dict[str, Any] = dict(form)
    values["route"] = forms.rows(form, "route", forms.ROUTE_FIELDS)
    values["cargo_lines"] = forms.rows(form, "cargo_lines", forms.LINE_FIELDS)
    values["contact"] = {
        "name": form.get("contact-name", ""),
        "phone": form.get("contact-phone", ""),
        "email": form.get("contact-email", ""),
    }
    return values


def _request_values(read: Any) -> dict[str, Any]:
    return {
        "destination_city_id": str(read.destination_city_id),
        "origin_city_id": str(read.origin_city_id or ""),
        "origin_name": read.origin_name or "",
        "route": [{k: v or "" for k, v in step.items()} for step in read.route],
        "planned_departure": local_input(read.planned_departure),
        "planned_arrival": local_input(read.planned_arrival),
        "trucks": str(read.trucks),
        "people_targeted": str(read.people_targeted),
        "contact": {k: v or "" for k, v in read.contact.items()},
        "notes": read.notes or "",
        "pause_id": str(read.pause_id or ""),
        "cargo_lines": [
            {"sector": line.sector.value, "item": line.item, "quantity": f"{line.quantity:g}", "unit": line.unit}
            for line in read.cargo_lines
        ],
        "version": str(read.version),
    }


async def _request_form(
    request: Request,
    page: Page,
    values: dict[str, Any],
    *,
    status: int = 200,
    errors: forms.FormErrors | None = None,
    editing: Any = None,
) -> Response:
    principal = page.principal

    def read(session: Session) -> dict[str, Any]:
        return {"cities": _cities(session), "pauses": _usable_pauses(session, principal)}

    choices = await _read(request, read)
    return page.render(
        "request_form.html",
        status=status,
        values=values,
        errors=errors or forms.FormErrors(),
        sectors=list(Sector),
        editing=editing,
        **choices,
    )


def _rows_changed(form: dict[str, str]) -> dict[str, Any] | None:
    """An 'add a row' or 'remove this row' button: the form again with the row added or removed, nothing written."""
    values = _form_values(form)
    action = form.get("do", "")
    for name, key in (("line", "cargo_lines"), ("step", "route")):
        if action == f"add-{name}":
            values[key].append({})
            return values
        if action.startswith(f"remove-{name}-"):
            index = action.rsplit("-", 1)[1]
            if index.isdigit() and int(index) < len(values[key]):
                del values[key][int(index)]
            return values
    return None


@router.get("/requests/new")
async def new_request(request: Request) -> Response:
    page = await _signed_in_page(request)
    if not _may_create(page.principal):
        return _failure(page, Forbidden(page.say("Only partners file access requests.")))
    return await _request_form(request, page, _empty_request_form())


@router.post("/requests/new")
async def create_request(request: Request) -> Response:
    page = await _signed_in_page(request)
    form = await _checked_form(request, page)
    if form is None:
        return _refused_csrf(page)
    changed = _rows_changed(form)
    if changed is not None:
        return await _request_form(request, page, changed)
    principal, services = page.principal, _services(request)
    try:
        body = forms.validated(AccessRequestCreate, forms.request_body(form))
    except ValidationError as error:
        return await _request_form(
            request, page, _form_values(form), status=422, errors=forms.from_validation(error, page.say)
        )
    try:
        created, _lines = await _write(
            request,
            lambda session: requests.create_access_request(
                session=session, actor=principal, rules=services.request_rules, data=body.model_dump()
            ),
        )
    except InvalidInput as error:
        return await _request_form(
            request, page, _form_values(form), status=422, errors=forms.from_invalid_input(error)
        )
    except DomainError as error:
        return _failure(page, error)
    return page.redirect(f"/requests/{created.id}")


async def _request_detail(
    request: Request,
    page: Page,
    request_id: uuid.UUID,
    *,
    status: int = 200,
    notice: str | None = None,
    errors: forms.FormErrors | None = None,
) -> Response:
    principal = page.principal

    def read(session: Session) -> dict[str, Any]:
        row = requests.get_access_request(session=session, actor=principal, request_id=request_id)
        shown = request_read(session, principal, row)
        events = audit.viewed(principal, request_lists.history(session=session, actor=principal, request_id=request_id))
        cities = {c.id: c for c in _cities(session)}
        return {"item": shown, "events": events, "cities": cities}

    try:
        found = await _read(request, read)
    except DomainError as error:
        return _failure(page, error)
    return page.render("request.html", status=status, notice=notice, errors=errors or forms.FormErrors(), **found)


def _uuid(value: str) -> uuid.UUID | None:
    """A path's id, or None for a page that answers 404 (FastAPI's own 422 would be the API's JSON problem)."""
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


@router.get("/requests/{request_id}")
async def request_page(request: Request, request_id: str) -> Response:
    page = await _signed_in_page(request)
    found = _uuid(request_id)
    if found is None:
        return _failure(page, NotFound("No such access request."))
    return await _request_detail(request, page, found)


@router.get("/requests/{request_id}/edit")
async def edit_request_page(request: Request, request_id: str) -> Response:
    page = await _signed_in_page(request)
    found = _uuid(request_id)
    if found is None:
        return _failure(page, NotFound("No such access request."))
    principal = page.principal

    def read(session: Session) -> Any:
        return request_read(
            session, principal, requests.get_access_request(session=session, actor=principal, request_id=found)
        )

    try:
        shown = await _read(request, read)
    except DomainError as error:
        return _failure(page, error)
    if "edit" not in shown.allowed_actions:
        return await _request_detail(
            request, page, found, status=409, notice=page.say("This request can no longer be edited.")
        )
    return await _request_form(request, page, _request_values(shown), editing=shown)


@router.post("/requests/{request_id}/edit")
async def edit_request(request: Request, request_id: str) -> Response:
    page = await _signed_in_page(request)
    form = await _checked_form(request, page)
    if form is None:
        return _refused_csrf(page)
    found = _uuid(request_id)
    if found is None:
        return _failure(page, NotFound("No such access request."))
    principal, services = page.principal, _services(request)
    editing = {"id": found, "version": form.get("version", "")}
    changed = _rows_changed(form)
    if changed is not None:
        return await _request_form(request, page, changed, editing=editing)
    try:
        body = forms.validated(AccessRequestUpdate, forms.request_body(form))
    except ValidationError as error:
        return await _request_form(
            request,
            page,
            _form_values(form),
            status=422,
            errors=forms.from_validation(error, page.say),
            editing=editing,
        )
    version = _version(form)
    try:
        await _write(
            request,
            lambda session: requests.update_access_request(
                session=session,
                actor=principal,
                rules=services.request_rules,
                request_id=found,
                changes=body.model_dump(exclude_unset=True),
                expected_version=version,
            ),
        )
    except InvalidInput as error:
        return await _request_form(
            request, page, _form_values(form), status=422, errors=forms.from_invalid_input(error), editing=editing
        )
    except (Conflict, PreconditionFailed) as error:
        return await _stale(request, page, found, error)
    except DomainError as error:
        return _failure(page, error)
    return page.redirect(f"/requests/{found}")


def _version(form: dict[str, str]) -> int | None:
    value = form.get("version", "")
    return int(value) if value.isdigit() else None


async def _stale(request: Request, page: Page, request_id: uuid.UUID, error: DomainError) -> Response:
    """A 409 or 412 in words, with the request as it stands now."""
    status = 412 if isinstance(error, PreconditionFailed) else 409
    words = (
        page.say("Someone changed this request after you opened it; nothing was saved. Here it is as it stands now.")
        if status == 412
        else page.say("This could not be done in the request's current state; nothing was saved.")
    )
    return await _request_detail(request, page, request_id, status=status, notice=f"{words} ({error.detail})")


REQUEST_ACTIONS = {"submit", "cancel", "approve", "deny", "request-changes"}


@router.post("/requests/{request_id}/{action}")
async def act_on_request(request: Request, request_id: str, action: str) -> Response:
    page = await _signed_in_page(request)
    form = await _checked_form(request, page)
    if form is None:
        return _refused_csrf(page)
    found = _uuid(request_id)
    if found is None or action not in REQUEST_ACTIONS:
        return _failure(page, NotFound("No such access request."))
    principal, services = page.principal, _services(request)
    version = _version(form)
    try:
        if action in {"cancel", "deny", "request-changes"}:
            reason = forms.validated(Reason, {"reason": form.get("reason", "").strip()}).reason
        if action == "approve":
            lines = [
                {"line_id": key.removeprefix("approved-"), "approved_quantity": value.strip()}
                for key, value in form.items()
                if key.startswith("approved-") and value.strip()
            ]
            approval = forms.validated(Approval, {"lines": lines, "note": form.get("note", "").strip() or None})
    except ValidationError as error:
        errors = forms.from_validation(error, page.say)
        remapped = forms.FormErrors()
        remapped.general = errors.general
        for name, message in errors.items():
            remapped[f"{action}-{name}"] = message
        return await _request_detail(request, page, found, status=422, errors=remapped)

    def write(session: Session) -> Any:
        common = {"session": session, "actor": principal, "request_id": found, "expected_version": version}
        if action == "submit":
            return requests.submit_access_request(rules=services.request_rules, **common)
        if action == "cancel":
            return requests.cancel_access_request(reason=reason, **common)
        if action == "deny":
            return requests.deny_access_request(reason=reason, **common)
        if action == "request-changes":
            return requests.request_changes(reason=reason, **common)
        approved = {line.line_id: line.approved_quantity for line in approval.lines}
        return requests.approve_access_request(approved=approved, note=approval.note, **common)

    try:
        await _write(request, write)
    except InvalidInput as error:
        errors = forms.from_invalid_input(error)
        remapped = forms.FormErrors()
        remapped.general = [*errors.general, *errors.values()]
        return await _request_detail(request, page, found, status=422, errors=remapped)
    except (Conflict, PreconditionFailed) as error:
        return await _stale(request, page, found, error)
    except DomainError as error:
        return _failure(page, error)
    return page.redirect(f"/requests/{found}")


# ---- pauses ------------------------------------------------------------------------------


@router.get("/pauses")
async def pause_list(request: Request) -> Response:
    page = await _signed_in_page(request)
    principal = page.principal

    def read(session: Session) -> dict[str, Any]:
        listed, more = pauses.list_pauses(session=session, actor=principal, limit=LISTED)
        now = utcnow()
        shown = [(p, pauses.display_status(p, now), pauses.allowed_actions(session, principal, p)) for p in listed]
        awaiting = [item for item in shown if "endorse" in item[2]]
        shown.sort(key=lambda item: item[0].starts_at, reverse=True)
        return {"items": shown, "awaiting": awaiting, "more": more}

    try:
        found = await _read(request, read)
    except DomainError as error:
        return _failure(page, error)
    return page.render("pauses.html", may_propose=bool(can(principal, PolicyAction.manage_pauses)), **found)


async def _pause_form(
    request: Request,
    page: Page,
    values: dict[str, Any],
    *,
    status: int = 200,
    errors: forms.FormErrors | None = None,
    editing: Any = None,
) -> Response:
    cities = await _read(request, _cities)
    return page.render(
        "pause_form.html",
        status=status,
        values=values,
        errors=errors or forms.FormErrors(),
        cities=cities,
        editing=editing,
    )


@router.get("/pauses/new")
async def new_pause(request: Request) -> Response:
    page = await _signed_in_page(request)
    if not can(page.principal, PolicyAction.manage_pauses):
        return _failure(page, Forbidden(page.say("Only coordinators propose pauses.")))
    return await _pause_form(request, page, {"city_ids": []})


@router.post("/pauses/new")
async def propose_pause(request: Request) -> Response:
    page = await _signed_in_page(request)
    form = await _checked_form(request, page)
    if form is None:
        return _refused_csrf(page)
    city_ids = [
        value for key, value in (await request.form()).multi_items() if key == "city_ids" and isinstance(value, str)
    ]
    values = {**form, "city_ids": city_ids}
    principal, services = page.principal, _services(request)
    try:
        body = forms.validated(PauseCreate, forms.pause_body(form, city_ids))
    except ValidationError as error:
        return await _pause_form(request, page, values, status=422, errors=forms.from_validation(error, page.say))
    try:
        pause = await _write(
            request,
            lambda session: pauses.propose_pause(
                session=session, actor=principal, rules=services.pause_rules, data=body.model_dump()
            ),
        )
    except InvalidInput as error:
        return await _pause_form(request, page, values, status=422, errors=forms.from_invalid_input(error))
    except DomainError as error:
        return _failure(page, error)
    return page.redirect(f"/pauses/{pause.id}")


async def _pause_detail(
    request: Request,
    page: Page,
    pause_id: uuid.UUID,
    *,
    status: int = 200,
    notice: str | None = None,
    errors: forms.FormErrors | None = None,
) -> Response:
    principal = page.principal

    def read(session: Session) -> dict[str, Any]:
        pause = pauses.get_pause(session=session, actor=principal, pause_id=pause_id)
        shown = pause_read(session, principal, pause)
        cities = {c.id: c for c in _cities(session)}
        since = None
        changes: list[Any] = []
        if "endorse" in shown.allowed_actions:
            since = pauses.last_decided_revision(session, pause_id, principal.organization_id)
            if since is not None and since < shown.revision:
                changes = pauses.revisions_since(session, principal, pause_id, since)
        return {"item": shown, "cities": cities, "seen_revision": since, "changes": changes}

    try:
        found = await _read(request, read)
    except DomainError as error:
        return _failure(page, error)
    return page.render("pause.html", status=status, notice=notice, errors=errors or forms.FormErrors(), **found)


async def _pause_stale(request: Request, page: Page, pause_id: uuid.UUID, error: DomainError) -> Response:
    """A 409 or 412 in words, with the pause as it stands now."""
    stale = isinstance(error, PreconditionFailed)
    words = (
        page.say("The pause changed after you opened it; nothing was saved. Here it is as it stands now.")
        if stale
        else page.say("This could not be done to the pause as it stands; nothing was saved.")
    )
    return await _pause_detail(
        request, page, pause_id, status=412 if stale else 409, notice=f"{words} ({error.detail})"
    )


@router.get("/pauses/{pause_id}")
async def pause_page(request: Request, pause_id: str) -> Response:
    page = await _signed_in_page(request)
    found = _uuid(pause_id)
    if found is None:
        return _failure(page, NotFound("No such pause."))
    return await _pause_detail(request, page, found)


@router.get("/pauses/{pause_id}/revise")
async def revise_pause_page(request: Request, pause_id: str) -> Response:
    page = await _signed_in_page(request)
    found = _uuid(pause_id)
    if found is None:
        return _failure(page, NotFound("No such pause."))
    principal = page.principal

    def read(session: Session) -> Any:
        return pause_read(session, principal, pauses.get_pause(session=session, actor=principal, pause_id=found))

    try:
        shown = await _read(request, read)
    except DomainError as error:
        return _failure(page, error)
    if "revise" not in shown.allowed_actions:
        return await _pause_detail(
            request, page, found, status=409, notice=page.say("This pause can no longer be revised.")
        )
    values = {
        "city_ids": [str(c) for c in shown.city_ids],
        "starts_at": local_input(shown.starts_at),
        "ends_at": local_input(shown.ends_at),
        "purpose": shown.purpose,
        "terms": shown.terms or "",
        "version": str(shown.version),
    }
    return await _pause_form(request, page, values, editing=shown)


@router.post("/pauses/{pause_id}/revise")
async def revise_pause(request: Request, pause_id: str) -> Response:
    page = await _signed_in_page(request)
    form = await _checked_form(request, page)
    if form is None:
        return _refused_csrf(page)
    found = _uuid(pause_id)
    if found is None:
        return _failure(page, NotFound("No such pause."))
    city_ids = [
        value for key, value in (await request.form()).multi_items() if key == "city_ids" and isinstance(value, str)
    ]
    values = {**form, "city_ids": city_ids}
    editing = {"id": found}
    principal, services = page.principal, _services(request)
    try:
        body = forms.validated(PauseUpdate, forms.pause_body(form, city_ids))
    except ValidationError as error:
        return await _pause_form(
            request, page, values, status=422, errors=forms.from_validation(error, page.say), editing=editing
        )
    try:
        await _write(
            request,
            lambda session: pauses.revise_pause(
                session=session,
                actor=principal,
                rules=services.pause_rules,
                pause_id=found,
                changes=body.model_dump(exclude_unset=True),
                expected_version=_version(form),
            ),
        )
    except InvalidInput as error:
        return await _pause_form(
            request, page, values, status=422, errors=forms.from_invalid_input(error), editing=editing
        )
    except (Conflict, PreconditionFailed) as error:
        return await _pause_stale(request, page, found, error)
    except DomainError as error:
        return _failure(page, error)
    return page.redirect(f"/pauses/{found}")


PAUSE_ACTIONS = {"endorse", "object", "approve", "withdraw", "suspend", "resume", "terminate"}


@router.post("/pauses/{pause_id}/{action}")
async def act_on_pause(request: Request, pause_id: str, action: str) -> Response:
    page = await _signed_in_page(request)
    form = await _checked_form(request, page)
    if form is None:
        return _refused_csrf(page)
    found = _uuid(pause_id)
    if found is None or action not in PAUSE_ACTIONS:
        return _failure(page, NotFound("No such pause."))
    principal, services = page.principal, _services(request)
    version = _version(form)
    reason = form.get("reason", "").strip() or None
    if action in {"suspend", "terminate"} and not reason:
        errors = forms.FormErrors()
        errors[f"{action}-reason"] = page.say("This field is required.")
        return await _pause_detail(request, page, found, status=422, errors=errors)

    def write(session: Session) -> Any:
        if action in {"endorse", "object"}:
            revision = int(form.get("revision", "0")) if form.get("revision", "").isdigit() else 0
            return pauses.endorse_pause(
                session=session,
                actor=principal,
                pause_id=found,
                decision=pauses.Decision(action),
                revision=revision,
                comment=form.get("comment"),
                delegation_id=None,
            )
        common = {"session": session, "actor": principal, "pause_id": found, "expected_version": version}
        if action == "approve":
            return pauses.approve_pause(rules=services.pause_rules, **common)
        if action == "withdraw":
            return pauses.withdraw_pause(reason=reason, **common)
        if action == "suspend":
            return pauses.suspend_pause(reason=reason, violation_id=None, **common)
        if action == "resume":
            return pauses.resume_pause(**common)
        return pauses.terminate_pause(reason=reason, **common)

    try:
        await _write(request, write)
    except (Conflict, PreconditionFailed) as error:
        return await _pause_stale(request, page, found, error)
    except InvalidInput as error:
        errors = forms.from_invalid_input(error)
        errors.general.extend(errors.values())
        return await _pause_detail(request, page, found, status=422, errors=errors)
    except DomainError as error:
        return _failure(page, error)
    return page.redirect(f"/pauses/{found}")


# ---- violations -----------------------------------------------------------------------------


async def _violations_page(
    request: Request, page: Page, *, status: int = 200, errors: forms.FormErrors | None = None
) -> Response:
    principal = page.principal
    if not can_list_violations(principal):
        return _failure(page, Forbidden(page.say("Your role does not follow violations.")))

    def read(session: Session) -> dict[str, Any]:
        listed, more = violations.list_violations(
            session=session, actor=principal, filters=ViolationFilters(), limit=LISTED, after=None
        )
        cities = {c.id: c for c in _cities(session)}
        return {
            "items": [(v, violations.allowed_actions(principal, v)) for v in reversed(listed)],
            "cities": cities,
            "more": more,
        }

    try:
        found = await _read(request, read)
    except DomainError as error:
        return _failure(page, error)
    return page.render("violations.html", status=status, errors=errors or forms.FormErrors(), **found)


@router.get("/violations")
async def violation_list(request: Request) -> Response:
    return await _violations_page(request, await _signed_in_page(request))


VIOLATION_ACTIONS = {
    "verify": ViolationAction.verify,
    "dismiss": ViolationAction.dismiss,
    "resolve": ViolationAction.resolve,
    "mark-unresolved": ViolationAction.mark_unresolved,
}


@router.post("/violations/{violation_id}/{action}")
async def act_on_violation(request: Request, violation_id: str, action: str) -> Response:
    page = await _signed_in_page(request)
    form = await _checked_form(request, page)
    if form is None:
        return _refused_csrf(page)
    found = _uuid(violation_id)
    if found is None or action not in VIOLATION_ACTIONS:
        return _failure(page, NotFound("No such violation."))
    principal = page.principal
    try:
        await _write(
            request,
            lambda session: violations.follow_up(
                session=session,
                actor=principal,
                violation_id=found,
                action=VIOLATION_ACTIONS[action],
                reason=form.get("reason"),
                expected_version=_version(form),
            ),
        )
    except InvalidInput as error:
        errors = forms.FormErrors()
        errors[f"{action}-{found}"] = "; ".join(item.message for item in error.errors) or error.detail
        return await _violations_page(request, page, status=422, errors=errors)
    except PreconditionFailed as error:
        errors = forms.FormErrors()
        words = page.say("The violation changed after you opened it; nothing was saved.")
        errors.general.append(f"{words} ({error.detail})")
        return await _violations_page(request, page, status=412, errors=errors)
    except Conflict as error:
        errors = forms.FormErrors()
        errors.general.append(error.detail)
        return await _violations_page(request, page, status=409, errors=errors)
    except DomainError as error:
        return _failure(page, error)
    return page.redirect("/violations")
