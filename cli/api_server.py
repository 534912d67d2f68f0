"""`segmentation api`: uvicorn workers (uvloop, httptools), each listening on the port with a socket
of its own (SO_REUSEPORT), so that the kernel spreads connections evenly between them.

uvicorn's own workers share one socket, and whichever is awake accepts a whole burst of new
connections: measured under keep-alive load, one of two workers served 93% of the requests while
the other idled, and latency doubled. With a socket per worker, the kernel hashes each connection
to one of them. This supervisor only starts the workers, starts again one that dies, and stops
them all on SIGINT or SIGTERM (each finishes its requests and runs the app's shutdown).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
from typing import Any

import uvicorn
from prometheus_client import multiprocess

from resources.serving_metrics import MULTIPROC_ENV

log = logging.getLogger("segmentation.api_server")
APP = "api.main:create_app"
BACKLOG = 2048
STOP_SECONDS = 30


def _listening_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    return sock


def _worker(host: str, port: int, reuse_port: bool) -> None:
    config = uvicorn.Config(
        APP,
        factory=True,
        loop="uvloop",
        http="httptools",
        backlog=BACKLOG,
        access_log=False,
        log_config=None,  # uvicorn's own loggers go to the JSON lines of create_app's configure_logging
    )
    uvicorn.Server(config).run(sockets=[_listening_socket(host, port, reuse_port=reuse_port)])


def _port_is_free(host: str, port: int) -> None:
    """Binds without SO_REUSEPORT once: a server already on the port (this API's included, which a
    socket with SO_REUSEPORT would silently join and share connections with) makes it fail."""
    _listening_socket(host, port, reuse_port=False).close()


def serve(host: str, port: int, workers: int) -> None:
    if workers == 1:
        _worker(host, port, reuse_port=False)
        return
    _port_is_free(host, port)
    context = multiprocessing.get_context("spawn")

    def start() -> Any:
        process = context.Process(target=_worker, args=(host, port, True), name="segmentation-api-worker")
        process.start()
        return process

    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    processes = [start() for _ in range(workers)]
    log.info("serving on %s:%d with %d workers (pids %s)", host, port, workers, [p.pid for p in processes])
    while not stopping.wait(0.5):
        for number, process in enumerate(processes):
            if not process.is_alive():
                log.warning("API worker %s exited with %s; starting another", process.pid, process.exitcode)
                if os.environ.get(MULTIPROC_ENV):
                    multiprocess.mark_process_dead(process.pid)  # its live gauges leave /metrics
                processes[number] = start()
    for process in processes:
        process.terminate()  # SIGTERM: uvicorn's graceful shutdown
    for process in processes:
        process.join(STOP_SECONDS)
        if process.is_alive():
            process.kill()
            process.join()
