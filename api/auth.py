"""Authentication in one place: the caller's key from its bearer token, its scope, and the route
class that checks both before a request's body is read."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import Forbidden, TooManyRequests, Unauthorized, UnsupportedMediaType
from api.key_cache import TooManyFailedChecks
from api.state import AppState, State
from resources.config_store.api_keys import ApiKey

_bearer = HTTPBearer(auto_error=False, description="An API key from `segmentation api-keys create`.")


async def authenticate(state: AppState, request: Request) -> ApiKey:
    """The key of the request's bearer token, or 401 (429 for a client that failed too many checks).
    Routes take it as `ReadKey`/`AdminKey`; the hottest one calls it."""
    token = bearer_token(request.headers.get("authorization"))
    if not token:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'", headers={"WWW-Authenticate": "Bearer"})
    try:
        # The peer's address: behind a proxy, the proxy's (headers naming a client are the client's to forge).
        key = await state.api_keys.authenticate(token, request.client.host if request.client else "")
    except TooManyFailedChecks as error:
        raise TooManyRequests(str(error), headers={"Retry-After": str(error.retry_after_seconds)}) from None
    if key is None:
        raise Unauthorized("unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    state.api_keys.usage.seen(key)
    return key


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, spaces around it dropped. Every
    route reads the header here, so that one header means the same key everywhere."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def _caller(
    request: Request, state: State, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> ApiKey:
    # `_bearer` only documents the scheme in OpenAPI; its parsing changed across FastAPI versions.
    return await authenticate(state, request)


def require_admin(key: ApiKey) -> ApiKey:
    if key.scope != "admin":
        raise Forbidden(f"this call needs an admin key; key {key.name!r} has scope {key.scope!r}")
    return key


async def _admin_key(key: Annotated[ApiKey, Depends(_caller)]) -> ApiKey:
    return require_admin(key)


ReadKey = Annotated[ApiKey, Depends(_caller)]  # any valid key may read
AdminKey = Annotated[ApiKey, Depends(_admin_key)]

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def is_json_media_type(content_type: str) -> bool:
    """`application/json` or `application/<anything>+json`, any case, with or without parameters
    (`; charset=utf-8`): the bodies FastAPI parses as JSON; it hands any other one to the route as
    bytes, which the route's model then refuses with a misleading "not a valid dictionary"."""
    main_type, _, subtype = content_type.split(";", 1)[0].strip().lower().partition("/")
    return main_type == "application" and "/" not in subtype and (subtype == "json" or subtype.endswith("+json"))


async def require_json_body(request: Request) -> None:
    """415 for a body that does not say it is JSON. A request without a body passes: it has no media
    type to judge, and the route answers what it needs (422 "body: Field required")."""
    content_type = request.headers.get("content-type")
    # Read here, not only by the route: an oversized body is still a 413 first (api/middleware/body_limit.py),
    # and the route reads the same cached bytes.
    if (content_type is not None and is_json_media_type(content_type)) or not await request.body():
        return
    sent = f"it was {content_type!r}" if content_type is not None else "none was sent"
    raise UnsupportedMediaType(f"the body must be JSON: send the header 'Content-Type: application/json' ({sent})")


def key_checked_first(*, admin: bool) -> type[APIRoute]:
    """A route class that checks the caller's key, and its scope, before the request's body is read,
    then that the body is JSON (415 otherwise).

    FastAPI reads a body before any dependency runs, so a body that is not JSON was a 422 before a
    missing key was a 401 (a 401 is owed). The routes' own `ReadKey`/`AdminKey` still run (answered
    from the key cache) and document the key in OpenAPI. Only POST, PUT and PATCH are checked here:
    the others carry no body. This check reads the app's state directly, so overriding the key
    dependencies (`app.dependency_overrides`) does not reach it."""

    class KeyCheckedFirst(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
            handler = super().get_route_handler()
            if not self.methods & BODY_METHODS:
                return handler  # nothing to check first, and no call added on the way

            async def checked_first(request: Request) -> Response:
                key = await authenticate(request.app.state.segmentation, request)
                if admin:
                    require_admin(key)
                await require_json_body(request)
                return await handler(request)

            return checked_first

    return KeyCheckedFirst
