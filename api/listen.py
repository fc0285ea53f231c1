"""Several worker processes on one port, each with a listening socket of its own (SO_REUSEPORT).

Why: uvicorn's workers share the one socket its supervisor bound, and whichever worker wakes
first accepts every connection then waiting. Clients that open their connections together (a
load balancer, a pool, the load bench) land on one worker: under the bench's mix (64
connections, two workers, PostgreSQL) one worker held 63 of them and the other 1, so two
workers served like one, at its latency. With a socket each, the kernel spreads new
connections over the workers by a hash of their addresses.

uvicorn's supervisor still starts, watches and restarts the workers; it hands each worker the
sockets it was given, by pickling them. It is given a ``WorkerSocket``, which unpickles in the
worker as a new socket of that worker's own, bound to the same address. The supervisor's one is
bound and never listens: it holds the port (and resolves port 0) and receives no connection.
A worker that dies loses the connections that were waiting in its own queue (its clients see a
reset and reconnect); with a shared socket they would have waited for the other workers.
"""

from __future__ import annotations

import logging
import socket
import sys

import uvicorn
from uvicorn import Config
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

log = logging.getLogger("aidaccess.serve")


class WorkerSocket(socket.socket):
    """The supervisor's socket: pickled for a worker, it becomes that worker's own."""

    def __reduce_ex__(self, protocol: object) -> tuple:
        return _bound, (self.family, self.getsockname())


def _bound(family: socket.AddressFamily, address: tuple, kind: type[socket.socket] = socket.socket) -> socket.socket:
    sock = kind(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        log.error("cannot listen on %s: %s", address, exc)
        sys.exit(STARTUP_FAILURE)  # the supervisor stops instead of restarting the worker forever
    return sock


def serve_workers(config: Config) -> None:
    """Serve ``config.app`` (an import string) with ``config.workers`` processes, a socket each."""
    family = socket.AF_INET6 if config.host and ":" in config.host else socket.AF_INET
    placeholder = _bound(family, (config.host, config.port), WorkerSocket)
    host, port = placeholder.getsockname()[:2]
    log.info("serving on %s port %d with %d workers", host, port, config.workers)
    try:
        Multiprocess(config, sockets=[placeholder]).run()
    finally:
        placeholder.close()


def serve(app: str, **options: object) -> None:
    """``app`` (an import string) served by uvicorn with ``options``: as uvicorn does with one worker,
    with a socket per worker (``serve_workers``) with more."""
    if options.get("workers", 1) == 1:
        uvicorn.run(app, **options)
    else:
        serve_workers(Config(app, **options))
