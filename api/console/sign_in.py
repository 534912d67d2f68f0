"""Sign-in with an API key (typed into a form, never put in a URL) and sign-out."""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import APIRouter, Request, Response

from api.console.form_input import form_of
from api.console.rendering import ConsoleRoute, see_other, sign_in_page
from api.console.sessions import (
    Poster,
    clear_session_cookie,
    clear_sign_in_cookie,
    in_store,
    session_store,
    set_session_cookie,
    sign_in_form_is_ours,
)
from api.key_cache import TooManyFailedChecks
from api.state import State

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

# Where a sign-in may send the browser on: a console page of this site, nothing else.
_CONSOLE_PATH = re.compile(r"/console(/[A-Za-z0-9_.~:@!$&'()*+,;=%?/-]*)?")


def console_path(path: str | None) -> str:
    path = path or ""
    return path if _CONSOLE_PATH.fullmatch(path) and "//" not in path else "/console/"


@router.get("")
async def console_root() -> Response:
    return see_other("/console/")


@router.get("/sign-in")
async def sign_in_form(request: Request) -> Response:
    notice = "You are signed out." if request.query_params.get("signed_out") else None
    return sign_in_page(request, next=console_path(request.query_params.get("next")), notice=notice)


@router.post("/sign-in")
async def sign_in(request: Request, state: State) -> Response:
    form = await form_of(request)
    next_path, kept = console_path(form.get("next")), form.get("kept", "")

    def again(error: str) -> Response:
        return sign_in_page(request, error=error, next=next_path, kept=kept)

    if not sign_in_form_is_ours(request, form.get("sign_in_token", "")):
        return again("This sign-in form has expired or did not come from this site: type your key again.")
    api_key = form.get("api_key", "").strip()
    if not api_key:
        return again("Type your API key.")
    try:
        key = await state.api_keys.authenticate(api_key, request.client.host if request.client else "")
    except TooManyFailedChecks as error:
        return again(f"Too many failed sign-ins from here: try again in {error.retry_after_seconds} s.")
    token = await in_store(request, session_store(request).open, api_key, _kept_input(kept, next_path)) if key else None
    if token is None:
        return again("This key is unknown or revoked.")
    response = see_other(next_path)
    set_session_cookie(response, request, token)
    clear_sign_in_cookie(response, request)
    return response


def _kept_input(kept: str, next_path: str) -> dict[str, Any] | None:
    """A form's input carried through the sign-in, for the page it goes back to; None if it is not that."""
    try:
        value = json.loads(kept) if kept else None
    except ValueError:
        return None
    if not isinstance(value, dict) or value.get("path") != next_path or not isinstance(value.get("fields"), dict):
        return None
    fields = {k: v for k, v in value["fields"].items() if isinstance(k, str) and isinstance(v, str)}
    return {"path": next_path, "fields": fields}


@router.post("/sign-out")
async def sign_out(request: Request, session: Poster) -> Response:
    await in_store(request, session_store(request).close, session.token)
    response = see_other("/console/sign-in?signed_out=1")
    clear_session_cookie(response, request)
    return response
