"""Whether a server can listen where it is told to, asked before it starts.

``campaigns api``, ``ingress``, ``sandbox`` and each worker's metrics port
check here first, so a port that is taken (or a host that does not resolve)
is one line naming the option or setting, exit 2, instead of a traceback
from deep inside the server.
"""

from __future__ import annotations

import socket

__all__ = ["port_problem"]


def port_problem(host: str, port: int) -> str | None:
    """Why nothing could listen on ``host:port`` right now, or None when it could."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        return f"cannot resolve host {host!r}: {reason}"
    family, kind, proto, _, address = found[0]
    with socket.socket(family, kind, proto) as probe:
        # As servers bind: a port in TIME_WAIT is free, one with a listener is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None
