"""Revocation notices: whoever revokes a key says so on a Redis channel, and every API process
listening drops the key's verdicts at once. A notice missed (Redis down, a process reconnecting)
leaves the key cache's life (api/key_cache.py) as the bound.

On a Redis Cluster the URL names one node, and a plain connection to it is enough: pub/sub needs
no slot, a message published on one node reaches the listeners of every node. PUBLISH counts only
the listeners of its node: all of them, as every process listens at the same URL."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import redis
import redis.asyncio as aioredis

from resources.names import key_revocations_channel

log = logging.getLogger(__name__)
RECONNECT_SECONDS = 1.0
# How long a read waits for a notice before the connection is checked (a PING): a connection lost
# without a word is found within about this long, and subscribed again.
HEARTBEAT_SECONDS = 10.0


def announce_revocation(redis_url: str, prefix: str, name: str) -> int:
    """Publishes the revoked key's name; the number of API processes that heard it."""
    with redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2) as client:
        return int(client.publish(key_revocations_channel(prefix), name))


async def listen_for_revocations(
    redis_url: str, prefix: str, on_revoked: Callable[[str], None], subscribed: asyncio.Event | None = None
) -> None:
    """Calls `on_revoked(name)` for each notice, until cancelled; subscribes again after a failure."""
    while True:
        client = aioredis.Redis.from_url(
            redis_url, socket_connect_timeout=2, socket_keepalive=True, health_check_interval=HEARTBEAT_SECONDS
        )
        try:
            async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(key_revocations_channel(prefix))
                if subscribed is not None:
                    subscribed.set()
                while True:
                    # Each call past the heartbeat's interval checks the connection first.
                    message = await pubsub.get_message(timeout=HEARTBEAT_SECONDS)
                    if message is not None:
                        on_revoked(message["data"].decode(errors="replace"))
        except asyncio.CancelledError:
            raise
        except Exception as error:  # any failure: subscribe again rather than stop listening for good
            log.warning("revocation notices interrupted (%s); subscribing again", type(error).__name__)
        finally:
            await client.aclose()
        await asyncio.sleep(RECONNECT_SECONDS)
