"""A Redis lock per segment type: two ingestions of one type never run at once (SPEC 8).

The lock has a token (only its holder can release it), an expiry (a crashed holder cannot block
forever) and a renewal thread that keeps it while the holder is alive.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.lock import Lock


class IngestionLocked(RuntimeError):
    pass


def lock_name(prefix: str, segment_type: str) -> str:
    return f"{prefix}:ingestion-lock:{segment_type}"


@contextmanager
def ingestion_lock(client: redis.Redis, prefix: str, segment_type: str, seconds: int) -> Iterator[None]:
    lock = Lock(client, lock_name(prefix, segment_type), timeout=seconds, blocking=False, thread_local=False)
    if not lock.acquire():
        raise IngestionLocked(
            f"another ingestion of segment type {segment_type!r} holds the lock {lock.name!r}; "
            "this one refuses to run at the same time"
        )
    stop = threading.Event()

    def keep_alive() -> None:
        while not stop.wait(seconds / 3):
            lock.reacquire()

    renewer = threading.Thread(target=keep_alive, name=f"lock-renewal-{segment_type}", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()
        lock.release()
