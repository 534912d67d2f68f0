"""Alerts to a Slack-compatible incoming webhook: the JSON body, one POST, and delivering the outbox.

A webhook URL is its own credential (whoever has a Slack one can post to the channel): it is never
logged, and what went wrong is recorded without it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from resources.config_store.alerts import Alert, AlertOutbox, RetryPolicy

# httpx logs every request's URL at INFO.
logging.getLogger("httpx").setLevel(logging.WARNING)

# Slack's limits: a header's text, a section's text, a field's text, fields per section.
_HEADER_CHARACTERS = 150
_SECTION_CHARACTERS = 3000
_FIELD_CHARACTERS = 2000
_FIELDS = 10


def _escaped(text: str) -> str:
    """Slack's mrkdwn reads `<...>` as links and mentions, so an error message could ping a channel."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _shown(value: Any) -> str:
    return ", ".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)


def slack_body(alert: Alert) -> dict[str, Any]:
    """`text` for notifications and for receivers that read nothing else; `blocks` for Slack."""
    facts = [(name.replace("_", " "), _shown(value)) for name, value in alert.payload.items() if value not in (None, "", [])]
    header = {"type": "plain_text", "text": alert.title[:_HEADER_CHARACTERS]}
    blocks: list[dict[str, Any]] = [{"type": "header", "text": header}]
    if alert.message:  # Slack refuses a section without text
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _escaped(alert.message)[:_SECTION_CHARACTERS]}})
    if facts:
        fields = [{"type": "mrkdwn", "text": _escaped(f"*{name}*\n{value}")[:_FIELD_CHARACTERS]} for name, value in facts]
        blocks.append({"type": "section", "fields": fields[:_FIELDS]})
    lines = [alert.title, alert.message, *(f"{name}: {value}" for name, value in facts)]
    return {"text": _escaped("\n".join(line for line in lines if line))[:_SECTION_CHARACTERS], "blocks": blocks}


def post(url: str, body: dict[str, Any], timeout_seconds: float) -> str | None:
    """None once the webhook accepted the body (any 2xx); otherwise what went wrong, without the URL."""

    async def exchange() -> httpx.Response:
        async with httpx.AsyncClient(timeout=timeout_seconds, follow_redirects=False) as client:
            # httpx's timeouts are per phase and per read: a receiver that trickles its answer
            # could hold a request much longer. This bounds the whole exchange.
            return await asyncio.wait_for(client.post(url, json=body), timeout_seconds)

    try:
        response = asyncio.run(exchange())
    except TimeoutError:
        return f"no answer within {timeout_seconds:g} s"
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        return f"{type(error).__name__}: {str(error).replace(url, '<webhook>')}"
    if response.is_success:
        return None
    return f"HTTP {response.status_code}: {response.text[:200]}"


@dataclass
class DeliveryReport:
    delivered: int = 0
    failed: int = 0
    given_up: int = 0
    last_error: str | None = None

    def __str__(self) -> str:
        outcome = f"{self.delivered} alerts delivered"
        if self.failed:
            outcome += f"; delivery failed ({self.last_error}), {'given up' if self.given_up else 'retried later'}"
        return outcome


def deliver_due_alerts(
    outbox: AlertOutbox,
    url: str,
    *,
    timeout_seconds: float,
    budget_seconds: float,
    policy: RetryPolicy,
    clock: Callable[[], float] = time.monotonic,
) -> DeliveryReport:
    """Posts due alerts, oldest first, while a whole POST timeout fits in the budget. Stops at the
    first failure: with the receiver failing, the others would only cost a timeout each."""
    if budget_seconds < timeout_seconds:
        raise ValueError("the budget must allow at least one POST: budget_seconds >= timeout_seconds")
    deadline = clock() + budget_seconds
    report = DeliveryReport()
    while deadline - clock() >= timeout_seconds:
        # The lease outlives this POST, so another deliverer never sends the alert at the same time.
        alert = outbox.claim_due(lease_seconds=timeout_seconds + 60)
        if alert is None:
            break
        error = post(url, slack_body(alert), timeout_seconds)
        if error is None:
            outbox.mark_delivered(alert)
            report.delivered += 1
            continue
        report.failed += 1
        report.last_error = error
        report.given_up += outbox.mark_failed(alert, error, policy)
        break
    return report
