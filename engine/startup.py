"""The start-up checks every engine makes before it serves, and how a refused start-up ends.

Light on purpose (standard library and :mod:`engine.config` only): the multi-worker engine's
parent (:mod:`engine.supervisor`) makes these checks without loading gRPC or SQLAlchemy, and
:mod:`engine.app` makes the same ones for a single-process engine.

Port ownership: one engine process binds its port exclusively (``grpc.so_reuseport`` off), so
a second engine on the same port cannot start. With ``COFFER_WORKERS > 1`` the workers share the
port through SO_REUSEPORT; before starting them the parent checks that nothing listens on the
port (:func:`check_port_free`) and holds a lock file under ``var/`` for the port
(:func:`port_lock`), so a second engine refuses instead of joining the workers' group.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import socket
from collections.abc import Iterator
from typing import IO

from engine.config import DEFAULT_SQLITE_DIRECTORY, Settings

__all__ = [
    "EXIT_STARTUP_FAILED",
    "StartupFailure",
    "check_listen_allowed",
    "check_port_free",
    "port_lock",
    "split_listen",
]

EXIT_STARTUP_FAILED = 1


class StartupFailure(Exception):
    """The engine cannot start; the message is the one line the operator sees."""


def split_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) as ``(host, port)``."""
    host, _, port = listen.rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError as error:
        raise StartupFailure(f"COFFER_LISTEN={listen!r} is not host:port") from error


def check_listen_allowed(settings: Settings) -> None:
    """``COFFER_AUTH=none`` is refused anywhere but a loopback address (CONTRACT §6)."""
    host, _port = split_listen(settings.listen)
    if settings.auth != "none":
        return
    loopback = host == "localhost"
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if not loopback:
        raise StartupFailure(f"COFFER_AUTH=none is allowed only on a loopback address, not {host!r}")


def check_port_free(listen: str) -> None:
    """Refuse, in one line, when something already listens on ``listen``'s port.

    A plain bind without SO_REUSEPORT fails while any socket (SO_REUSEPORT or not) is bound
    there; SO_REUSEADDR only lets it pass connections still in TIME_WAIT from a previous run."""
    host, port = split_listen(listen)
    if port == 0:
        return
    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise StartupFailure(f"COFFER_LISTEN={listen!r}: {error}") from error
    for family, kind, protocol, _name, address in addresses:
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise StartupFailure(
                        f"port {port} on {host or '*'} is already in use (another coffer engine?); "
                        "stop it or choose another COFFER_LISTEN"
                    ) from error
                raise StartupFailure(f"cannot listen on {listen}: {error.strerror}") from error


@contextlib.contextmanager
def port_lock(port: int) -> Iterator[IO[str]]:
    """Hold ``var/coffer-port-<port>.lock`` for the life of a multi-worker engine, so two such
    engines started at the same moment cannot both pass :func:`check_port_free`."""
    DEFAULT_SQLITE_DIRECTORY.mkdir(parents=True, exist_ok=True)
    path = DEFAULT_SQLITE_DIRECTORY / f"coffer-port-{port}.lock"
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise StartupFailure(f"port {port} is held by another coffer engine (lock {path})") from error
        yield handle
