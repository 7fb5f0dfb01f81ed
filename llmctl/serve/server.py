"""Running the app under uvicorn on a socket bound beforehand: the ready callback once it
listens, and a drain on SIGINT / SIGTERM (new requests get 503 while the ones in flight finish;
a second signal stops at once)."""

from __future__ import annotations

import signal
import threading
import time


def bind(host: str, port: int):
    """A listening socket, or OSError (port taken, address not local)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def run(app, sock, service, on_ready, on_drain=None) -> None:
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            if self.started:
                host, port = sock.getsockname()[:2]
                on_ready(f"http://{'[' + host + ']' if ':' in host else host}:{port}")

        def handle_exit(self, sig, frame):
            if service.draining or sig not in (signal.SIGINT, signal.SIGTERM):
                self.should_exit = self.force_exit = True
                return
            service.draining = True
            if on_drain is not None:
                on_drain(signal.Signals(sig).name)
            threading.Thread(target=self._drain, daemon=True).start()

        def _drain(self):
            # The middleware counts every request being answered (a streamed one until its last byte).
            while service.in_flight > 0 or (service.engine is not None and service.engine.busy()):
                time.sleep(0.05)
            self.should_exit = True

    config = uvicorn.Config(app, log_config=None, access_log=False, log_level="warning", lifespan="off",
                            timeout_graceful_shutdown=5)
    Server(config).run(sockets=[sock])
