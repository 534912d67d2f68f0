"""Pages of the console: the Jinja2 templates (autoescaped: names and labels are shown as text,
never run), the headers every page carries, and the route class that turns every failure into a
page rather than the API's JSON.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from api.console.form_input import form_of
from api.console.sessions import CSRF_FIELD, SignedIn, SignInNeeded, set_sign_in_cookie
from api.errors import ApiError, NotFound, unavailable
from resources.config_store.guard import ConfigStoreUnavailable
from resources.serving.search_guard import SearchUnavailable

PACKAGE = Path(__file__).parent
STATIC_PATH = "/console/static"

# No inline script or style anywhere, so the policy can forbid both: injected markup cannot run.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",  # pages hold customer ids and segment settings
}
# The fields a form's input is kept without, when it goes through sign-in again.
NOT_KEPT = frozenset({CSRF_FIELD, "api_key"})
MAX_KEPT_CHARACTERS = 64 * 1024

templates = Environment(
    loader=FileSystemLoader(PACKAGE / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _thousands(number: Any) -> str:
    return "—" if number is None else f"{number:,}" if isinstance(number, int) else str(number)


def _moment(value: datetime | str) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


templates.filters["thousands"] = _thousands
templates.filters["iso"] = lambda value: _moment(value).astimezone(timezone.utc).isoformat()
templates.filters["shown_time"] = lambda value: _moment(value).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# A form shown again with the API's error (422, 412), and the sign-in form however it went, answer
# 200: they are expected steps of a form, and Chromium logs every 4xx page as an error in its
# console. The page names the status it stands for (`data-api-status`). Refusals (403 for a read
# key or a form without its CSRF token, 404, 409) keep their status.


def render(
    request: Request,
    template: str,
    signed_in: SignedIn | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    html = templates.get_template(template).render(
        request=request, signed_in=signed_in, static=STATIC_PATH, notice=context.pop("notice", None), **context
    )
    return HTMLResponse(html, status_code=status_code)


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def error_page(request: Request, error: ApiError) -> HTMLResponse:
    if is_htmx(request):  # into the panel that asked; htmx swaps only a 2xx in
        return render(request, "message_fragment.html", None, message=error.message)
    return render(
        request, "error.html", None, error.status_code, error=error, title=_TITLES.get(error.status_code, "Error")
    )


_TITLES = {
    400: "Bad request",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    412: "Changed meanwhile",
    415: "Bad request",
    422: "Invalid input",
    429: "Too many attempts",
    503: "Unavailable",
}


def sign_in_page(request: Request, **context: Any) -> HTMLResponse:
    """The sign-in form, with the token of its double-submit cookie in the page and in the cookie."""
    token = secrets.token_urlsafe(24)
    context = {"reason": None, "error": None, "next": "/console/", "kept": "", **context}
    response = render(request, "sign_in.html", None, sign_in_token=token, **context)
    set_sign_in_cookie(response, request, token)
    return response


async def sign_in_again(request: Request, reason: str) -> Response:
    """A page reached without a session goes to sign-in (and back after it); a form sent without
    one shows the sign-in form at once, carrying the form's input, so that nothing typed is lost."""
    if is_htmx(request):
        message = "Your session has ended. Use the form's main button to sign in again: what you typed is kept."
        return render(request, "message_fragment.html", None, message=message)
    if request.method == "GET":
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return see_other(f"/console/sign-in?{urlencode({'next': here})}")
    form = await form_of(request)
    kept = {name: value for name, value in form.items() if name not in NOT_KEPT}
    return_to = form.get("return_to", "/console/")
    kept_json = json.dumps({"path": return_to, "fields": kept}) if kept else ""
    if len(kept_json) > MAX_KEPT_CHARACTERS:
        kept_json = ""  # too big to carry: the sign-in still works, the input is lost
    return sign_in_page(request, reason=reason, next=return_to, kept=kept_json)


class ConsoleRoute(APIRoute):
    """Every console route answers a page: an error as a page with its status, a missing session as
    the way back to sign-in; and every answer carries the security headers."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except SignInNeeded as needed:
                response = await sign_in_again(request, needed.reason)
            except ApiError as error:
                response = error_page(request, error)
            except (ConfigStoreUnavailable, SearchUnavailable) as error:
                response = error_page(request, unavailable(error))
            except RequestValidationError:
                response = error_page(request, NotFound("There is no such page."))
            response.headers.update(SECURITY_HEADERS)
            return response

        return console_handler
