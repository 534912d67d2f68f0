"""`segmentation api`: uvicorn workers (uvloop, httptools), each listening on the port with a socket
of its own (SO_REUSEPORT), so that the kernel spreads connections evenly between them.

uvicorn's own workers share one socket, and whichever is awake accepts a whole burst of new
connections: measured under keep-alive load, one of two workers served 93% of the requests while
the other idled, and latency doubled. With a socket per worker, the kernel hashes each connection
to one of them. This supervisor only starts the workers, starts again one that dies, and stops
them all on SIGINT or SIGTERM (each finishes its requests and runs the app's shutdown). A worker
that exits with an error before it serves (a bad setting, a missing module) stops the server
instead: starting another would only fail the same way, over and over.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

import uvicorn
from prometheus_client import multiprocess

from api.http_limits import HttpLimits, LimitedHttpProtocol
from resources.serving.metrics import MULTIPROC_ENV
from resources.settings import get_settings

log = logging.getLogger("segmentation.api_server")
APP = "api.main:create_app"
BACKLOG = 2048
STOP_SECONDS = 30


class WorkerFailedToStart(RuntimeError):
    pass


def _listening_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    return sock


class _Server(uvicorn.Server):
    """Listens only once the app is imported, and says when it serves, so that the supervisor can
    tell a worker that failed to start.

    A socket bound before the imports (seconds) would join the port's SO_REUSEPORT group early: the
    kernel would queue a share of new connections on a worker not accepting yet, and reset them
    all if that worker then died or failed to start."""

    def __init__(self, config: uvicorn.Config, bind: Callable[[], socket.socket], ready: Any) -> None:
        super().__init__(config)
        self._bind = bind
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn imports the app (config.load) before startup; the sockets passed here are closed
        # with its servers on shutdown.
        await super().startup(sockets=[self._bind()])
        if self.started and self._ready is not None:
            self._ready.set()


def _worker(host: str, port: int, reuse_port: bool, ready: Any = None, edge_limits: bool = True) -> None:
    settings = get_settings()
    limits = HttpLimits(head_seconds=settings.api_head_read_seconds, body_seconds=settings.api_body_read_seconds)
    config = uvicorn.Config(
        APP,
        factory=True,
        loop="uvloop",
        # httptools, with limits at the edge; without them only as bench/bench_api.py's baseline
        http=functools.partial(LimitedHttpProtocol, limits=limits) if edge_limits else "httptools",
        backlog=BACKLOG,
        access_log=False,
        log_config=None,  # uvicorn's own loggers go to the JSON lines of create_app's configure_logging
    )
    _Server(config, lambda: _listening_socket(host, port, reuse_port=reuse_port), ready).run()


def _port_is_free(host: str, port: int) -> None:
    """Binds without SO_REUSEPORT once: a server already on the port (this API's included, which a
    socket with SO_REUSEPORT would silently join and share connections with) makes it fail."""
    _listening_socket(host, port, reuse_port=False).close()


def serve(host: str, port: int, workers: int, *, edge_limits: bool = True) -> None:
    if workers == 1:
        _worker(host, port, reuse_port=False, edge_limits=edge_limits)
        return
    _port_is_free(host, port)
    context = multiprocessing.get_context("spawn")

    readiness: dict[int, Any] = {}

    def start() -> Any:
        ready = context.Event()
        process = context.Process(target=_worker, args=(host, port, True, ready, edge_limits), name="segmentation-api-worker")
        process.start()
        readiness[process.pid] = ready
        return process

    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    processes = [start() for _ in range(workers)]
    log.info("serving on %s:%d with %d workers (pids %s)", host, port, workers, [p.pid for p in processes])
    failure: WorkerFailedToStart | None = None
    while failure is None and not stopping.wait(0.5):
        for number, process in enumerate(processes):
            if process.is_alive():
                continue
            # Exited by itself with an error before serving: a bad setting or a missing module, which
            # another worker would only meet again. Killed by a signal (the OOM killer, an operator):
            # replaced like any worker that dies.
            if not readiness[process.pid].is_set() and (process.exitcode or 0) > 0:
                failure = WorkerFailedToStart(f"API worker {process.pid} exited with {process.exitcode} while starting; see its log")
                break
            log.warning("API worker %s exited with %s; starting another", process.pid, process.exitcode)
            if os.environ.get(MULTIPROC_ENV):
                multiprocess.mark_process_dead(process.pid)  # its live gauges leave /metrics
            processes[number] = start()
    _stop(processes)
    if failure is not None:
        raise failure


def _stop(processes: list[Any]) -> None:
    for process in processes:
        process.terminate()  # SIGTERM: uvicorn's graceful shutdown
    for process in processes:
        process.join(STOP_SECONDS)
        if process.is_alive():
            process.kill()
            process.join()
