"""A Redis lock per segment type: two ingestions of one type never run at once (SPEC 8).

redis-py's `Lock` gives the token (only its holder can release it), the expiry (a crashed holder
cannot block forever) and the atomic renewal; a thread renews it while the holder works.

The token is the owner's id: for a Dagster run, its run id. That lets one run's index step hand
the lock to its alias step, so a run's load, verification and alias switch form one critical
section that no other ingestion or rollback of the type can enter in between.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.exceptions import LockError, LockNotOwnedError
from redis.lock import Lock


class IngestionLocked(RuntimeError):
    pass


def lock_name(prefix: str, segment_type: str) -> str:
    return f"{prefix}:ingestion-lock:{segment_type}"


class HeldLock:
    """What the holder may say while inside `IngestionLock.held()`."""

    def __init__(self) -> None:
        self.handed_over = False

    def hand_over(self) -> None:
        """Keep the lock after leaving (until it expires or the owner's next step releases it)."""
        self.handed_over = True


class IngestionLock:
    def __init__(self, client: redis.Redis, prefix: str, segment_type: str, seconds: int, owner: str) -> None:
        self.segment_type = segment_type
        self.owner = owner
        self.seconds = seconds
        self._client = client
        self._lock = Lock(client, lock_name(prefix, segment_type), timeout=seconds, thread_local=False)

    @property
    def name(self) -> str:
        return str(self._lock.name)

    def acquire(self) -> None:
        """Takes the lock, or adopts it when this owner already holds it; refuses otherwise."""
        if self._lock.acquire(blocking=False, token=self.owner):
            return
        self._lock.local.token = self.owner.encode()
        try:
            self._lock.reacquire()  # atomic: succeeds only if the stored token is ours
        except LockNotOwnedError:
            self._lock.local.token = None
            raise IngestionLocked(self._refusal()) from None

    def release(self) -> None:
        try:
            self._lock.release()
        except LockError:
            pass  # expired or never taken: nothing of ours to release

    def _refusal(self) -> str:
        holder = self._client.get(self.name)
        ttl_ms = self._client.pttl(self.name)
        holder_text = holder.decode() if isinstance(holder, bytes) else holder
        expiry = f", which expires in {ttl_ms / 1000:.0f} s unless renewed" if ttl_ms and ttl_ms > 0 else ""
        return (
            f"another ingestion of segment type {self.segment_type!r} is running (lock {self.name!r} held by "
            f"{holder_text or 'an owner that just left'}{expiry}); this one refuses to run at the same time"
        )

    @contextmanager
    def held(self) -> Iterator[HeldLock]:
        """Acquires (or adopts), renews every third of the expiry, releases on leaving unless handed over.

        Losing the lock while inside (Redis lost it, or renewal stalled past the expiry) fails the
        holder on leaving, since another ingestion may have started meanwhile.
        """
        self.acquire()
        state = HeldLock()
        stop = threading.Event()
        lost: list[Exception] = []

        def keep_alive() -> None:
            while not stop.wait(self.seconds / 3):
                try:
                    self._lock.reacquire()
                except Exception as error:  # noqa: BLE001 - reported to the holder on leaving
                    lost.append(error)
                    return

        renewer = threading.Thread(target=keep_alive, name=f"lock-renewal-{self.segment_type}", daemon=True)
        renewer.start()
        failed = True
        try:
            yield state
            failed = False
        finally:
            stop.set()
            renewer.join()
            if failed or not state.handed_over or lost:
                self.release()
        if lost:
            raise IngestionLocked(f"lost the ingestion lock {self.name!r} while working: {lost[0]}")
