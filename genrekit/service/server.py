"""Run the service with uvicorn, stopping cleanly on SIGTERM / SIGINT.

uvicorn's graceful shutdown waits for every open request, and an upload that has
stalled never ends: after ``shutdown_timeout_s`` uvicorn cancels it and answers a
text/plain 500. Here the first signal also closes the service's
:class:`~genrekit.service.limits.Gate`, so uploads in progress and requests waiting for
a worker end at once with the JSON 503 ``shutting_down`` (their temporary folders
removed), and only the requests already running are waited for.
"""
from __future__ import annotations


def run_server(app, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
               shutdown_timeout_s: float = 10.0) -> None:
    """Serve ``app`` (from :func:`~genrekit.service.create_app`) until SIGTERM or SIGINT.

    Parameters
    ----------
    app : fastapi.FastAPI
    host, port : str, int
        Where to listen (port 0: any free port).
    log_level : str
        uvicorn's log level.
    shutdown_timeout_s : float
        How long running requests may still take after the signal.
    """
    import uvicorn

    gate = app.state.settings.gate

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            gate.close()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                            timeout_graceful_shutdown=shutdown_timeout_s)
    sock = listening_socket(host, port)
    shown = f"[{host}]" if ":" in host else host
    print(f"genrekit serve: listening on http://{shown}:{sock.getsockname()[1]} (Ctrl-C stops)", flush=True)
    Server(config).run(sockets=[sock])


def listening_socket(host: str, port: int):
    """A TCP socket bound to ``host:port``, or :class:`~genrekit.errors.ConfigError` in one line
    (uvicorn would log its own lines after "startup complete" and exit)."""
    import socket

    from ..errors import ConfigError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.set_inheritable(True)
    return sock
