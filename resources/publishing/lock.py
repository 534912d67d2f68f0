"""A Redis lock per segment type: two ingestions of one type never run at once.

redis-py's `Lock` gives the token (only its holder can release it), the expiry (a crashed holder
cannot block forever) and the atomic renewal; a thread renews it while the holder works, and
keeps trying through a Redis outage for as long as the lock lasts. Before marking an index
verified, the holder asks Redis whether the lock is still its own (`HeldLock.confirm`); the alias
step proves it when it adopts the lock.

The token is the owner's id: for a Dagster run, its run id. That lets one run's index step hand
the lock to its alias step, so a run's load, verification and alias switch form one critical
section that no other ingestion or rollback of the type can enter in between.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from redis.exceptions import LockError, LockNotOwnedError
from redis.lock import Lock

from resources.names import ingestion_lock_key
from resources.redis_clients import REDIS_ERRORS, SyncRedis

# A renewal that failed (Redis unreachable) is tried again this often, until the lock has expired.
RENEWAL_RETRY_SECONDS = 1.0


class IngestionLocked(RuntimeError):
    pass


class HeldLock:
    """What the holder may say, and ask, while inside `IngestionLock.held()`."""

    def __init__(self, lock: Lock, lost: list[Exception]) -> None:
        self.handed_over = False
        self._lock = lock
        self._lost = lost

    def hand_over(self) -> None:
        """Keep the lock after leaving (until it expires or the owner's next step releases it)."""
        self.handed_over = True

    def confirm(self) -> None:
        """Raises `IngestionLocked` unless the lock is this holder's now, as Redis says."""
        if self._lost:
            raise IngestionLocked(f"lost the ingestion lock {self._lock.name!r} while working: {self._lost[0]}")
        try:
            owned = self._lock.owned()
        except REDIS_ERRORS as error:
            raise IngestionLocked(f"cannot tell whether the ingestion lock {self._lock.name!r} is still held: {error}") from error
        if not owned:
            raise IngestionLocked(f"lost the ingestion lock {self._lock.name!r} while working: another owner, or none, holds it")


class IngestionLock:
    def __init__(self, client: SyncRedis, prefix: str, segment_type: str, seconds: int, owner: str) -> None:
        self.segment_type = segment_type
        self.owner = owner
        self.seconds = seconds
        self._client = client
        self._lock = Lock(client, ingestion_lock_key(prefix, segment_type), timeout=seconds, thread_local=False)

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

    def release(self) -> bool:
        """Releases the lock; False when it was not this owner's any more (expired, or taken)."""
        try:
            self._lock.release()
        except LockNotOwnedError:
            return False
        except LockError:
            pass  # never taken: nothing to release
        return True

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

        Losing the lock while inside (Redis lost it, renewal failed until the expiry, or another
        owner holds it when leaving) raises `IngestionLocked` on leaving, since another ingestion
        may have started meanwhile; a holder whose work stands anyway reports it instead.
        """
        self.acquire()
        stop = threading.Event()
        lost: list[Exception] = []
        state = HeldLock(self._lock, lost)

        def keep_alive() -> None:
            renewed = time.monotonic()
            wait = self.seconds / 3
            while not stop.wait(wait):
                try:
                    self._lock.reacquire()
                except LockNotOwnedError as error:  # another owner's now, or gone with Redis's data
                    lost.append(error)
                    return
                except Exception as error:  # noqa: BLE001 - Redis unreachable: again, while the lock lasts
                    if time.monotonic() - renewed >= self.seconds:
                        lost.append(error)
                        return
                    wait = min(RENEWAL_RETRY_SECONDS, self.seconds / 3)
                    continue
                renewed, wait = time.monotonic(), self.seconds / 3

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
                try:
                    not_ours = not self.release()
                except REDIS_ERRORS:  # unreachable: the lock expires by itself, and the holder's own error says more
                    not_ours = False
                if not_ours and not failed:
                    lost.append(LockNotOwnedError("on leaving, another owner, or none, holds it"))
        if lost:
            raise IngestionLocked(f"lost the ingestion lock {self.name!r} while working: {lost[0]}")
