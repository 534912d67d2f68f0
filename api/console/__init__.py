"""The console (`/console/`): pages for segment owners, served by the API process.

Server-rendered (Jinja2, autoescaped), with htmx (vendored under static/vendor/) for the preview
panel only; no build step. Its routes call the API's services, so its checks and errors are the
API's; sign-in is a cookie session kept in PostgreSQL.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.console import preview_pages, segment_changes, segment_pages, sign_in
from api.console.rendering import PACKAGE, STATIC_PATH
from resources.config_store.console_sessions import ConsoleSessions
from resources.config_store.database import session_factory
from resources.settings import Settings


def mount_console(app: FastAPI, settings: Settings) -> None:
    app.state.console_sessions = ConsoleSessions(
        session_factory(settings.database_url), idle_seconds=settings.console_session_idle_seconds
    )
    app.mount(STATIC_PATH, StaticFiles(directory=PACKAGE / "static"), name="console-static")
    # In this order: the fixed paths (`/segments/new`) before the patterns that would take them,
    # and the segment pages, which end with the console's catch-all "not found", last.
    for module in (sign_in, segment_changes, preview_pages, segment_pages):
        app.include_router(module.router)
