"""A console form as sent: `application/x-www-form-urlencoded`, read once per request.

Parsed here with the standard library rather than through Starlette's `request.form()`, which
needs python-multipart: the console's forms send no files, so that dependency would buy nothing.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import Request

from api.errors import ApiError, UnsupportedMediaType

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
MAX_FIELDS = 500  # a segment form has a few dozen


class BadForm(ApiError):
    status_code = 400
    code = "bad_form"


async def form_of(request: Request) -> dict[str, str]:
    """The form's fields (the last value of a repeated name); {} for a request without a body."""
    cached = getattr(request.state, "console_form", None)
    if cached is not None:
        return cached
    body = await request.body()
    form: dict[str, str] = {}
    if body:
        media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type != FORM_MEDIA_TYPE:
            raise UnsupportedMediaType(f"a console form is sent as {FORM_MEDIA_TYPE}")
        try:
            form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS))
        except (UnicodeDecodeError, ValueError) as error:
            raise BadForm("the form could not be read (not UTF-8, or too many fields)") from error
    request.state.console_form = form
    return form
