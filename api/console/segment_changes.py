"""What an admin key may do: create and edit segments (forms built from the type's JSON Schema),
pause, resume and archive them (after a confirmation, with the version read as `If-Match`).

Every change goes through the API's service (`SegmentConfigs`), so its checks and its errors are
the API's: a 422 is shown beside the field it names, a stale version (412) says so and keeps what
was typed. A create form carries a one-time token, so sending it twice creates one segment.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Request, Response

from api.config.schemas import SegmentUpdate
from api.config.service import SegmentConfigs
from api.console.form_input import form_of
from api.console.forms import (
    DESCRIPTION,
    LABELS,
    NAME,
    PARTITION,
    STATUS,
    FormErrors,
    FormField,
    create_body,
    errors_beside,
    param_fields,
    segment_values,
    update_body,
)
from api.console.rendering import ConsoleRoute, render, see_other
from api.console.segment_pages import checked_segment_id
from api.console.segment_types import segment_type_named, segment_types
from api.console.sessions import Reader, SignedIn, Writer, in_store, require_admin, session_store
from api.errors import ApiError, Conflict, InvalidInput, NotFound, PreconditionFailed
from api.state import State
from resources.config_store.segments import Segment

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

FORM_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")
ACTIONS = {"pause": "paused", "resume": "resumed", "archive": "archived"}
Action = Path(pattern="^(pause|resume|archive)$")
KEPT = "Your session had ended: here is what you typed. Check it and send it again."
# A second submission of a form waits this long for the first one's segment.
FIRST_SUBMISSION_WAIT_SECONDS = 5.0


class BadRequest(ApiError):
    status_code = 400
    code = "bad_request"


def _type_or_404(name: str) -> dict[str, Any]:
    segment_type = segment_type_named(name)
    if segment_type is None:
        raise NotFound(f"there is no segment type {name!r}")
    return segment_type


def _version(form: dict[str, str]) -> int:
    try:
        return int(form.get("version", ""))
    except ValueError:
        raise BadRequest("the form lacks the version it was read at: reload the page") from None


def form_path(segment_type: dict[str, Any], segment: Segment | None) -> str:
    """The page of the form: where a form sent while signed out comes back to after sign-in."""
    if segment is not None:
        return f"/console/segments/{segment.id}/edit"
    return f"/console/segments/new?{urlencode({'type': segment_type['name']})}"


async def _kept_input(request: Request, session: SignedIn, path: str) -> dict[str, str] | None:
    """The input of a form sent while signed out, given back once to the page it came from."""
    if not session.has_kept_input:
        return None
    kept = await in_store(request, session_store(request).take_kept_input, session.token)
    return kept["fields"] if kept and kept.get("path") == path else None


def form_page(
    request: Request,
    session: SignedIn,
    *,
    segment_type: dict[str, Any],
    segment: Segment | None,
    values: dict[str, str],
    errors: FormErrors | None = None,
    api_status: int | None = None,
    **context: Any,
) -> Response:
    """The create form (no `segment`) or the edit form of a segment of this type."""
    fields = param_fields(segment_type["params_schema"])
    top: list[FormField] = [NAME, DESCRIPTION, LABELS] + ([STATUS] if segment is None else [])
    errors = errors or FormErrors()
    return render(
        request,
        "segment_form.html",
        session,
        api_status=api_status,
        segment_type=segment_type,
        segment=segment,
        top_fields=top,
        param_fields=fields,
        partition_field=PARTITION,
        values=values,
        errors=errors,
        focus=errors.first_of([*top, *fields]),
        return_to=form_path(segment_type, segment),
        **{"conflict": None, "current_values": {}, "notice": None, **context},
    )


# --- create --------------------------------------------------------------------------------------


@router.get("/segments/new")
async def new_segment(request: Request, session: Reader) -> Response:
    require_admin(session)
    name = request.query_params.get("type")
    if not name:
        return render(request, "segment_types.html", session, types=segment_types())
    segment_type = _type_or_404(name)
    kept = await _kept_input(request, session, form_path(segment_type, None))
    values = kept or {"form_token": secrets.token_urlsafe(24), "status": "active"}
    return form_page(
        request, session, segment_type=segment_type, segment=None, values=values, notice=KEPT if kept else None
    )


@router.post("/segments")
async def create_segment(request: Request, session: Writer, state: State) -> Response:
    form = await form_of(request)
    segment_type = _type_or_404(form.get("segment_type", ""))
    token = form.get("form_token", "")
    if not FORM_TOKEN.fullmatch(token):
        raise BadRequest("the form lacks its one-time token: reload the page and fill it in again")
    store = session_store(request)
    claim = await in_store(request, store.claim, token)
    if not claim.first:
        return await _first_submission(request, token, claim.segment_id)
    try:
        body = create_body(segment_type["name"], param_fields(segment_type["params_schema"]), form)
        segment = await SegmentConfigs(state).create(body, session.key)
    except InvalidInput as error:
        await in_store(request, store.release, token)  # nothing was made: the fixed form may be sent again
        fields = [NAME, DESCRIPTION, LABELS, STATUS, *param_fields(segment_type["params_schema"])]
        return form_page(
            request,
            session,
            segment_type=segment_type,
            segment=None,
            values=form,
            errors=errors_beside(error, [f.name for f in fields]),
            api_status=422,
        )
    except BaseException:
        await asyncio.shield(in_store(request, store.release, token))
        raise
    await in_store(request, store.complete, token, segment.id)
    return see_other(f"/console/segments/{segment.id}?done=created")


async def _first_submission(request: Request, token: str, segment_id: str | None) -> Response:
    """A form sent again: the segment its first submission created (waited for while it is saved)."""
    deadline = asyncio.get_running_loop().time() + FIRST_SUBMISSION_WAIT_SECONDS
    while segment_id is None and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
        segment_id = await in_store(request, session_store(request).submitted, token)
    if segment_id is None:
        raise Conflict("This form is still being saved from its first submission: open the segment list in a moment.")
    return see_other(f"/console/segments/{segment_id}?done=exists")


# --- edit ----------------------------------------------------------------------------------------


@router.get("/segments/{segment_id}/edit")
async def edit_segment(request: Request, segment_id: str, session: Reader, state: State) -> Response:
    require_admin(session)
    segment = await SegmentConfigs(state).get(checked_segment_id(segment_id))
    _not_archived(segment)
    segment_type = _type_or_404(segment.segment_type)
    kept = await _kept_input(request, session, form_path(segment_type, segment))
    values = kept or {
        **segment_values(segment, param_fields(segment_type["params_schema"])),
        "version": str(segment.version),
    }
    return form_page(
        request, session, segment_type=segment_type, segment=segment, values=values, notice=KEPT if kept else None
    )


@router.post("/segments/{segment_id}/edit")
async def save_segment(request: Request, segment_id: str, session: Writer, state: State) -> Response:
    form = await form_of(request)
    configs = SegmentConfigs(state)
    current = await configs.get(checked_segment_id(segment_id))
    _not_archived(current)
    segment_type = _type_or_404(current.segment_type)
    fields = param_fields(segment_type["params_schema"])
    version = _version(form)
    try:
        # As the API: a stale version is said first, whatever else the form holds.
        if current.version != version:
            raise _stale(current, version)
        await configs.update(current.id, update_body(current, fields, form), version, session.key)
    except PreconditionFailed as error:
        current = await configs.get(current.id)
        stored = segment_values(current, fields)
        return form_page(
            request,
            session,
            segment_type=segment_type,
            segment=current,
            values={**form, "version": str(current.version)},  # saving again is a choice made knowing it
            api_status=412,
            conflict=error.message,
            current_values={name: value for name, value in stored.items() if form.get(name, "") != value},
        )
    except InvalidInput as error:
        return form_page(
            request,
            session,
            segment_type=segment_type,
            segment=current,
            values=form,
            errors=errors_beside(error, [f.name for f in (NAME, DESCRIPTION, LABELS, *fields)]),
            api_status=422,
        )
    return see_other(f"/console/segments/{current.id}?done=saved")


def _stale(current: Segment, version: int) -> PreconditionFailed:
    return PreconditionFailed(
        f"This segment was changed since you opened the form: it is at version {current.version}, "
        f"you edited version {version}."
    )


def _not_archived(segment: Segment) -> None:
    if segment.status == "archived":
        raise Conflict(f"Segment {segment.id!r} is archived; archived segments cannot be changed.")


# --- pause, resume, archive ----------------------------------------------------------------------


@router.get("/segments/{segment_id}/{action}")
async def confirm_action(
    request: Request, segment_id: str, session: Reader, state: State, action: str = Action
) -> Response:
    require_admin(session)
    segment = await SegmentConfigs(state).get(checked_segment_id(segment_id))
    _not_archived(segment)
    return render(
        request, "confirm.html", session, segment=segment, action=action, version=segment.version, conflict=None
    )


@router.post("/segments/{segment_id}/{action}")
async def apply_action(
    request: Request, segment_id: str, session: Writer, state: State, action: str = Action
) -> Response:
    form = await form_of(request)
    configs = SegmentConfigs(state)
    segment_id, version = checked_segment_id(segment_id), _version(form)
    try:
        if action == "archive":
            await configs.archive(segment_id, version, session.key)
        else:
            status = "paused" if action == "pause" else "active"
            await configs.update(segment_id, SegmentUpdate(status=status), version, session.key)
    except PreconditionFailed as error:
        current = await configs.get(segment_id)
        return render(
            request,
            "confirm.html",
            session,
            segment=current,
            action=action,
            version=current.version,
            conflict=error.message,
        )
    return see_other(f"/console/segments/{segment_id}?{urlencode({'done': ACTIONS[action]})}")
