"""Who is signed in to the console: the session cookie, the session it names (kept in PostgreSQL:
resources/config_store/console_sessions.py), and the CSRF check of every form.

The cookie holds a random token; PostgreSQL holds only its hash, so a sign-out or a revoked key
ends the session on every worker at once. The cookie is HttpOnly and SameSite=Strict, scoped to
`/console`, and Secure over HTTPS. Each form carries a CSRF token derived from the session's token
(an HMAC), so it is bound to the session and needs no storage. The sign-in form, which has no
session yet, is protected by a double-submit cookie of its own.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request, Response

from api.console.form_input import form_of
from api.errors import Forbidden
from resources.config_store.api_keys import ApiKey
from resources.config_store.console_sessions import ConsoleSessions

SESSION_COOKIE = "console_session"
SIGN_IN_COOKIE = "console_sign_in"
COOKIE_PATH = "/console"
SIGN_IN_COOKIE_SECONDS = 3600
CSRF_FIELD = "csrf_token"


class SignInNeeded(Exception):
    """No session, or it ended: the request goes back to sign-in (a form's input kept)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CsrfRefused(Forbidden):
    code = "csrf_refused"


@dataclass(frozen=True)
class SignedIn:
    token: str
    key: ApiKey
    has_kept_input: bool

    @property
    def csrf_token(self) -> str:
        return csrf_token_of(self.token)

    @property
    def is_admin(self) -> bool:
        return self.key.scope == "admin"


def csrf_token_of(session_token: str) -> str:
    return hmac.new(session_token.encode(), b"console csrf", hashlib.sha256).hexdigest()


def session_store(request: Request) -> ConsoleSessions:
    return request.app.state.console_sessions


async def in_store(request: Request, call: Any, *args: Any) -> Any:
    """A call to the session store, through the config store's guard (503 while PostgreSQL is down)."""
    return await request.app.state.segmentation.config_store.run(call, *args)


async def signed_in(request: Request) -> SignedIn:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInNeeded("Sign in with your API key.")
    session = await in_store(request, session_store(request).find, token)
    if session is None:
        raise SignInNeeded("Your session has ended (signed out, expired or its key revoked): sign in again.")
    return SignedIn(token, ApiKey(session.key_name, session.scope), session.kept_input is not None)


async def _form_sent_from_console(request: Request, session: Annotated[SignedIn, Depends(signed_in)]) -> SignedIn:
    sent = (await form_of(request)).get(CSRF_FIELD, "")
    if not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
        raise CsrfRefused("This form was not sent from a console page of your session: reload the page and try again.")
    return session


async def _admin_form(session: Annotated[SignedIn, Depends(_form_sent_from_console)]) -> SignedIn:
    require_admin(session)
    return session


def require_admin(session: SignedIn) -> None:
    if not session.is_admin:
        raise Forbidden(f"This needs an admin key; key {session.key.name!r} has scope {session.key.scope!r}.")


Reader = Annotated[SignedIn, Depends(signed_in)]  # any valid key may look
Poster = Annotated[SignedIn, Depends(_form_sent_from_console)]  # a form of the session (sign-out)
Writer = Annotated[SignedIn, Depends(_admin_form)]  # a form of an admin key's session


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session_cookie(response: Response, request: Request, token: str) -> None:
    # No Max-Age: the browser forgets it when closed; the server ends it after the idle time anyway.
    response.set_cookie(
        SESSION_COOKIE, token, path=COOKIE_PATH, httponly=True, samesite="strict", secure=_secure(request)
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict", secure=_secure(request))


def set_sign_in_cookie(response: Response, request: Request, token: str) -> None:
    """The sign-in form's token, also set as a cookie that only this site's pages send back."""
    response.set_cookie(
        SIGN_IN_COOKIE,
        token,
        max_age=SIGN_IN_COOKIE_SECONDS,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def sign_in_form_is_ours(request: Request, sent: str) -> bool:
    cookie = request.cookies.get(SIGN_IN_COOKIE, "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), sent.encode())


def clear_sign_in_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(SIGN_IN_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict", secure=_secure(request))
