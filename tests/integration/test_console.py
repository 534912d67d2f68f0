"""The console (`/console/`) without a browser, on real PostgreSQL: the session cookie and its
flags, CSRF, what a read key may do, a double submit, HTML in names, an expired session, and the
API's errors beside the fields. The walk in a real browser is tests/integration/test_console_browser.py."""

from __future__ import annotations

import hashlib
import html
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from api.main import create_app
from api.console.overview import owed_partition
from api.console.sessions import SESSION_COOKIE, csrf_token_of
from resources.config_store.api_keys import ApiKeyRepository
from resources.config_store.database import session_factory
from resources.config_store.history import CalculationHistory, RecordedSegment
from resources.config_store.segments import SegmentFilters, SegmentRepository
from resources.settings import Settings

pytestmark = pytest.mark.integration

NEW_CUSTOMERS = {"segment_type": "new_customers", "params": {"max_days_since_signup": 30}}


@dataclass
class Keys:
    admin: str
    reader: str
    repository: ApiKeyRepository


@pytest.fixture(scope="module")
def keys(settings: Settings) -> Keys:
    repository = ApiKeyRepository(session_factory(settings.database_url))
    return Keys(repository.create("console-admin", "admin"), repository.create("console-reader", "read"), repository)


@pytest.fixture(scope="module")
def app(settings: Settings) -> Iterator[TestClient]:
    """One client for the module: the app's async clients (Redis, Elasticsearch) live on its loop."""
    with TestClient(create_app(settings), follow_redirects=False) as client:
        yield client


@pytest.fixture(scope="module")
def segments(settings: Settings) -> SegmentRepository:
    return SegmentRepository(session_factory(settings.database_url))


class Browser:
    """A cookie jar of its own, as a browser has, sending through the module's one client."""

    def __init__(self, client: TestClient) -> None:
        self._client = client
        self.cookies = httpx.Cookies()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        self._client.cookies = self.cookies
        try:
            return self._client.request(method, url, **kwargs)
        finally:
            self.cookies = httpx.Cookies(self._client.cookies)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", url, **kwargs)


def browser(app: TestClient) -> Browser:
    return Browser(app)


def hidden(page: str, name: str) -> str:
    match = re.search(rf'<input type="hidden" name="{name}" value="([^"]*)"', page)
    assert match, f"no hidden field {name!r} in the page"
    return html.unescape(match.group(1))


def sign_in(client: Browser, api_key: str, next_path: str = "/console/", kept: str = "") -> Any:
    page = client.get(f"/console/sign-in?next={next_path}")
    assert page.status_code == 200
    form = {"sign_in_token": hidden(page.text, "sign_in_token"), "next": next_path, "api_key": api_key}
    if kept:
        form["kept"] = kept
    return client.post("/console/sign-in", data=form)


def signed_in(app: TestClient, api_key: str) -> Browser:
    client = browser(app)
    response = sign_in(client, api_key)
    assert response.status_code == 303, response.text
    return client


def csrf(client: Browser) -> str:
    return csrf_token_of(client.cookies[SESSION_COOKIE])


def new_form(client: Browser, segment_type: str = "new_customers") -> str:
    page = client.get(f"/console/segments/new?type={segment_type}")
    assert page.status_code == 200, page.text
    return page.text


def create_form(client: Browser, page: str, **fields: str) -> dict[str, str]:
    return {
        "csrf_token": hidden(page, "csrf_token"),
        "form_token": hidden(page, "form_token"),
        "segment_type": hidden(page, "segment_type"),
        "return_to": hidden(page, "return_to"),
        "name": "Signed up this month",
        "status": "active",
        "params.max_days_since_signup": "30",
        **fields,
    }


def named(segments: SegmentRepository, name: str) -> list[Any]:
    found, _ = segments.list(SegmentFilters(), after_id=None, limit=500)
    return [s for s in found if s.name == name]


def field_error(page: str, field: str) -> str:
    match = re.search(rf'<p class="field-error" id="field-{field.replace(".", "-")}-error">([^<]*)</p>', page)
    assert match, f"no error shown beside {field!r}"
    return html.unescape(match.group(1))


# --- sign-in and the session cookie ----------------------------------------------------------------


def test_sign_in_sets_an_http_only_same_site_strict_cookie_and_stores_only_its_hash(
    app: TestClient, keys: Keys, settings: Settings
) -> None:
    client = browser(app)
    response = sign_in(client, keys.admin, next_path="/console/customers")
    assert response.status_code == 303 and response.headers["location"] == "/console/customers"
    assert keys.admin not in response.headers["location"]
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(f"{SESSION_COOKIE}="))
    flags = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")[1:]}
    assert "httponly" in flags and flags["samesite"].lower() == "samesite=strict" and flags["path"] == "Path=/console"
    assert "max-age" not in flags and "expires" not in flags  # gone when the browser closes
    token = client.cookies[SESSION_COOKIE]
    assert keys.admin not in cookie and token != keys.admin
    engine = create_engine(settings.database_url)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT token_hash FROM console_sessions")).scalars().all()
    engine.dispose()
    assert hashlib.sha256(token.encode()).hexdigest() in rows and token not in rows
    page = client.get("/console/customers")
    assert page.status_code == 200 and "console-admin" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"


def test_a_wrong_key_or_a_forged_sign_in_form_signs_nobody_in(app: TestClient, keys: Keys) -> None:
    client = browser(app)
    wrong = sign_in(client, keys.admin[:-1] + ("x" if keys.admin[-1] != "x" else "y"))
    assert wrong.status_code == 200 and "unknown or revoked" in wrong.text  # a typo: the form again
    assert SESSION_COOKIE not in client.cookies
    # A sign-in posted from another site carries no sign-in cookie: login CSRF is refused.
    forged = browser(app).post(
        "/console/sign-in", data={"sign_in_token": "x" * 32, "api_key": keys.admin, "next": "/console/"}
    )
    assert "did not come from this site" in forged.text and SESSION_COOKIE not in forged.cookies


def test_sign_out_and_revocation_end_the_session_at_once(app: TestClient, keys: Keys) -> None:
    client = signed_in(app, keys.reader)
    stale, kept_cookies = browser(app), httpx.Cookies(client.cookies)  # a copy of the cookie, kept
    out = client.post("/console/sign-out", data={"csrf_token": csrf(client)})
    assert out.status_code == 303 and out.headers["location"].startswith("/console/sign-in")
    stale.cookies = kept_cookies
    assert stale.get("/console/").status_code == 303  # to sign-in

    name = "console-revoked"
    key = keys.repository.create(name, "read")
    client = signed_in(app, key)
    assert client.get("/console/").status_code == 200
    keys.repository.revoke(name)
    assert client.get("/console/").headers["location"].startswith("/console/sign-in")


# --- CSRF and scopes -----------------------------------------------------------------------------


def test_a_form_without_its_sessions_csrf_token_is_refused(app: TestClient, keys: Keys, segments: SegmentRepository) -> None:
    client = signed_in(app, keys.admin)
    page = new_form(client)
    for token in ("", "0" * 64, csrf_token_of("another session")):
        response = client.post("/console/segments", data=create_form(client, page, name="csrf probe", csrf_token=token))
        assert response.status_code == 403 and "not sent from a console page" in response.text
    assert named(segments, "csrf probe") == []
    assert client.post("/console/sign-out", data={}).status_code == 403


def test_a_read_key_sees_no_write_buttons_and_gets_403_on_every_write(
    app: TestClient, keys: Keys, segments: SegmentRepository
) -> None:
    admin = signed_in(app, keys.admin)
    created = admin.post("/console/segments", data=create_form(admin, new_form(admin), name="read-only probe"))
    segment_id = created.headers["location"].split("/")[-1].split("?")[0]
    reader = signed_in(app, keys.reader)
    listing, page = reader.get("/console/").text, reader.get(f"/console/segments/{segment_id}").text
    assert "read-only probe" in listing and "read-only probe" in page
    for write in ('href="/console/segments/new"', f"/console/segments/{segment_id}/", ">Edit<", ">Archive<", ">Pause<"):
        assert write not in listing + page, write
    for path in (
        "/console/segments/new?type=new_customers",
        f"/console/segments/{segment_id}/edit",
        f"/console/segments/{segment_id}/archive",
    ):
        assert reader.get(path).status_code == 403
    token = csrf(reader)
    writes = {
        "/console/segments": create_form(reader, new_form(admin), name="read-only probe 2", csrf_token=token),
        f"/console/segments/{segment_id}/edit": {
            "csrf_token": token,
            "version": "1",
            "name": "renamed",
            "params.max_days_since_signup": "5",
        },
        f"/console/segments/{segment_id}/pause": {"csrf_token": token, "version": "1"},
        f"/console/segments/{segment_id}/archive": {"csrf_token": token, "version": "1"},
        "/console/previews": {
            "csrf_token": token,
            "segment_type": "new_customers",
            "params.max_days_since_signup": "5",
        },
    }
    for path, form in writes.items():
        response = reader.post(path, data=form)
        assert response.status_code == 403, (path, response.text)
        assert "needs an admin key" in response.text
    assert segments.get(segment_id).version == 1 and segments.get(segment_id).status == "active"
    assert named(segments, "read-only probe 2") == []


# --- create: the API's errors, one segment per form ------------------------------------------------


def test_a_value_out_of_range_gets_the_apis_422_beside_its_field_and_keeps_the_input(
    app: TestClient, keys: Keys, segments: SegmentRepository
) -> None:
    client = signed_in(app, keys.admin)
    page = new_form(client)
    form = create_form(
        client, page, name="Out of range", labels="team: growth", **{"params.max_days_since_signup": "400"}
    )
    response = client.post("/console/segments", data=form)
    assert response.status_code == 200 and 'data-api-status="422"' in response.text  # the form again
    api = client.post(
        "/v1/segments",
        json={"name": "x", **NEW_CUSTOMERS, "params": {"max_days_since_signup": 400}},
        headers={"Authorization": f"Bearer {keys.admin}"},
    ).json()["error"]["details"][0]
    assert api["field"] == "params.max_days_since_signup"
    assert field_error(response.text, "params.max_days_since_signup") == api["message"]
    assert 'aria-invalid="true"' in response.text and "autofocus" in response.text
    assert (
        'value="400"' in response.text and "team: growth" in response.text and 'value="Out of range"' in response.text
    )
    assert named(segments, "Out of range") == []
    # Fixed, the same form (same one-time token) goes through.
    fixed = client.post("/console/segments", data={**form, "params.max_days_since_signup": "30"})
    assert fixed.status_code == 303 and fixed.headers["location"].endswith("?done=created")
    assert len(named(segments, "Out of range")) == 1


def test_a_double_submit_creates_one_segment(app: TestClient, keys: Keys, segments: SegmentRepository) -> None:
    client = signed_in(app, keys.admin)
    form = create_form(client, new_form(client), name="Double submit")
    first = client.post("/console/segments", data=form)
    again = client.post("/console/segments", data=form)
    assert first.status_code == again.status_code == 303
    assert again.headers["location"] == first.headers["location"].replace("done=created", "done=exists")
    # And sent several times at once (a double click, a retrying proxy).
    form = create_form(client, new_form(client), name="Sent at once")
    answers: list[Any] = []
    threads = [
        threading.Thread(target=lambda: answers.append(client.post("/console/segments", data=form))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {a.status_code for a in answers} == {303}
    assert len({a.headers["location"].split("?")[0] for a in answers}) == 1
    assert len(named(segments, "Double submit")) == 1 and len(named(segments, "Sent at once")) == 1


def test_html_in_names_and_labels_is_shown_as_text(app: TestClient, keys: Keys, segments: SegmentRepository) -> None:
    name = '<script>alert("name")</script><b>bold</b>'
    label = "<img src=x onerror=alert(1)>"
    client = signed_in(app, keys.admin)
    form = create_form(client, new_form(client), name=name, labels=f"team: {label}", description="<i>hi</i>")
    response = client.post("/console/segments", data=form)
    assert response.status_code == 303, response.text
    for path in ("/console/", response.headers["location"], response.headers["location"].split("?")[0] + "/edit"):
        page = client.get(path, params={"q": "bold"} if path == "/console/" else None).text
        assert "&lt;script&gt;alert(" in page and "&lt;b&gt;bold&lt;/b&gt;" in page, path
        for raw in (name, label, "<b>bold</b>", "<i>hi</i>", "<img"):
            assert raw not in page, (path, raw)
        # No inline script or style: the page's policy forbids both, so nothing injected could run.
        assert not re.search(r"<script(?![^>]*\ssrc=)", page) and " style=" not in page


# --- an expired session ----------------------------------------------------------------------------


def test_an_expired_session_goes_back_to_sign_in_and_keeps_the_forms_input(
    app: TestClient, keys: Keys, settings: Settings, segments: SegmentRepository
) -> None:
    client = signed_in(app, keys.admin)
    form = create_form(
        client, new_form(client), name="Typed before expiry", labels="team: growth", description="long text"
    )
    engine = create_engine(settings.database_url)
    with engine.begin() as connection:  # idle past the idle time
        connection.execute(text("UPDATE console_sessions SET last_seen_at = now() - interval '9 hours'"))
    engine.dispose()

    answer = client.post("/console/segments", data=form)
    assert answer.status_code == 200 and "Sign in" in answer.text and "What you typed is kept" in answer.text
    assert named(segments, "Typed before expiry") == []
    next_path, kept = hidden(answer.text, "next"), hidden(answer.text, "kept")
    assert next_path == "/console/segments/new?type=new_customers" and "long text" in kept

    signed = sign_in(client, keys.admin, next_path=next_path, kept=kept)
    assert signed.status_code == 303 and signed.headers["location"] == next_path
    page = client.get(next_path)
    assert page.status_code == 200 and "here is what you typed" in page.text
    assert 'value="Typed before expiry"' in page.text and "team: growth" in page.text and "long text" in page.text
    assert hidden(page.text, "form_token") == form["form_token"]  # still the one form: one segment at most
    # Given back once: reloading the page shows an empty form again.
    assert 'value="Typed before expiry"' not in client.get(next_path).text
    resent = {**form, "csrf_token": hidden(page.text, "csrf_token")}
    assert client.post("/console/segments", data=resent).status_code == 303
    assert client.post("/console/segments", data=resent).status_code == 303
    assert len(named(segments, "Typed before expiry")) == 1


def test_a_page_asked_for_without_a_session_comes_back_after_sign_in(app: TestClient, keys: Keys) -> None:
    client = browser(app)
    away = client.get("/console/customers?customer_id=c1")
    assert (
        away.status_code == 303
        and away.headers["location"] == "/console/sign-in?next=%2Fconsole%2Fcustomers%3Fcustomer_id%3Dc1"
    )
    signed = sign_in(client, keys.reader, next_path="/console/customers?customer_id=c1")
    assert signed.headers["location"] == "/console/customers?customer_id=c1"
    # Only console pages: a sign-in never sends the browser to another site.
    assert sign_in(browser(app), keys.reader, next_path="https://evil.example/").headers["location"] == "/console/"
    assert sign_in(browser(app), keys.reader, next_path="//evil.example/").headers["location"] == "/console/"


# --- edit, pause, archive: If-Match and 412 --------------------------------------------------------


def test_a_stale_edit_says_so_and_keeps_what_was_typed(app: TestClient, keys: Keys, segments: SegmentRepository) -> None:
    client = signed_in(app, keys.admin)
    created = client.post("/console/segments", data=create_form(client, new_form(client), name="Edited twice"))
    segment_id = created.headers["location"].split("/")[-1].split("?")[0]
    page = client.get(f"/console/segments/{segment_id}/edit").text
    assert hidden(page, "version") == "1"
    # Someone else changes it meanwhile, through the API.
    changed = client.patch(
        f"/v1/segments/{segment_id}",
        json={"name": "Renamed by someone else"},
        headers={"Authorization": f"Bearer {keys.admin}", "If-Match": "1"},
    )
    assert changed.status_code == 200
    form = {
        "csrf_token": hidden(page, "csrf_token"),
        "version": "1",
        "name": "My new name",
        "params.max_days_since_signup": "45",
        "labels": "",
        "description": "",
    }
    stale = client.post(f"/console/segments/{segment_id}/edit", data=form)
    assert 'data-api-status="412"' in stale.text and "Changed meanwhile (412)" in stale.text
    assert (
        "at version 2" in stale.text and 'value="My new name"' in stale.text and "Renamed by someone else" in stale.text
    )
    assert segments.get(segment_id).name == "Renamed by someone else"
    # Saving again, knowing, replaces it.
    saved = client.post(f"/console/segments/{segment_id}/edit", data={**form, "version": hidden(stale.text, "version")})
    assert saved.status_code == 303
    assert (
        segments.get(segment_id).name == "My new name"
        and segments.get(segment_id).params["max_days_since_signup"] == 45
    )


def test_pause_resume_and_archive_need_a_confirmation_and_the_version_read(
    app: TestClient, keys: Keys, segments: SegmentRepository
) -> None:
    client = signed_in(app, keys.admin)
    created = client.post("/console/segments", data=create_form(client, new_form(client), name="Paused and archived"))
    segment_id = created.headers["location"].split("/")[-1].split("?")[0]
    for action, status in (("pause", "paused"), ("resume", "active")):
        confirm = client.get(f"/console/segments/{segment_id}/{action}")
        assert confirm.status_code == 200 and f"{action.capitalize()} segment" in confirm.text
        done = client.post(
            f"/console/segments/{segment_id}/{action}",
            data={"csrf_token": csrf(client), "version": hidden(confirm.text, "version")},
        )
        assert done.status_code == 303 and segments.get(segment_id).status == status
    confirm = client.get(f"/console/segments/{segment_id}/archive").text
    stale = client.post(f"/console/segments/{segment_id}/archive", data={"csrf_token": csrf(client), "version": "1"})
    assert 'data-api-status="412"' in stale.text and segments.get(segment_id).status == "active"
    done = client.post(
        f"/console/segments/{segment_id}/archive",
        data={"csrf_token": csrf(client), "version": hidden(confirm, "version")},
    )
    assert done.status_code == 303 and segments.get(segment_id).status == "archived"
    page = client.get(done.headers["location"]).text
    assert "Archived:" in page and "/edit" not in page
    assert client.get(f"/console/segments/{segment_id}/edit").status_code == 409


# --- what the pages show ---------------------------------------------------------------------------


def test_the_list_and_the_segment_page_show_the_last_calculation_and_the_audit(
    app: TestClient, keys: Keys, settings: Settings, segments: SegmentRepository
) -> None:
    client = signed_in(app, keys.admin)
    created = client.post(
        "/console/segments", data=create_form(client, new_form(client), name="With history", labels="team: crm")
    )
    segment_id = created.headers["location"].split("/")[-1].split("?")[0]
    owed = owed_partition(settings, datetime.now(timezone.utc))
    history = CalculationHistory(session_factory(settings.database_url))
    for partition, count, entered, exited in (("2026-11-01", 1200, 1200, 0), (owed, 1350, 400, 250)):
        history.record(
            segment_type="new_customers",
            partition_key=partition,
            run_id=f"run-{partition}",
            calculated_at=datetime.now(timezone.utc),
            segments=[RecordedSegment(segment_id, 1, count, entered, exited)],
        )
    listing = client.get("/console/", params={"q": "With history", "label": "team:crm"}).text
    row = listing[listing.index(f'href="/console/segments/{segment_id}"') :]
    row = row[: row.index("</tr>")]
    for shown in ("1,350", "400", "250", owed, "fresh", "team: crm", "new_customers", "active"):
        assert shown in row, shown
    page = client.get(f"/console/segments/{segment_id}").text
    assert page.count('<circle class="point"') == 2 and "<svg" in page and "Member count over time" in page
    assert "2026-11-01: 1,200 members" in page
    assert "Max Days Since Signup" in page and "Audit trail" in page and "console-admin" in page
    bad = client.get("/console/", params={"label": "no colon"})
    assert bad.status_code == 200 and 'id="filter-label-error">' in bad.text and "key:value" in bad.text


def test_the_customer_lookup_checks_the_id_beside_the_field(app: TestClient, keys: Keys) -> None:
    client = signed_in(app, keys.reader)
    bad = client.get("/console/customers", params={"customer_id": "not an id!"})
    assert bad.status_code == 200 and 'id="customer-id-error">not a customer id' in bad.text
    unknown = client.get("/console/customers", params={"customer_id": "nobody-here"})
    assert unknown.status_code == 200 and "in no served segment" in unknown.text
