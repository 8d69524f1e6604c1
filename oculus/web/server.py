"""Run the Bottle app on waitress in a background thread."""

from __future__ import annotations

import logging
import threading

from waitress.server import create_server

from oculus.config import self_url

log = logging.getLogger(__name__)


class WebServer:
    def __init__(self, runtime, server_config):
        from oculus.runtime import StartupError
        from oculus.web.app import create_app

        self.app = create_app(runtime)
        try:
            self.server = create_server(self.app, host=server_config.bind, port=server_config.port,
                                        threads=server_config.threads, ident="Oculus")
        except (OSError, ValueError) as exc:  # ValueError: waitress rejects some addresses itself
            reason = (getattr(exc, "strerror", None) or str(exc)).rstrip(".")
            raise StartupError(
                f"cannot listen on {server_config.bind}:{server_config.port}: {reason}; "
                "check --bind (an IP address or local host name), stop the other process "
                "or choose another port with --port"
            ) from None
        self.port = self.server.effective_port
        self.url = self_url(server_config.bind, self.port)
        self._thread = threading.Thread(target=self._serve, name="oculus-web", daemon=True)

    def _serve(self) -> None:
        try:
            self.server.run()
        except OSError as exc:
            # Closing the listening socket on stop ends the loop with EBADF; anything else is a fault.
            if not self._stopping:
                log.error("web server stopped unexpectedly error=%s", exc)

    _stopping = False

    def start(self) -> None:
        self._thread.start()
        log.info("web server listening url=%s", self.url)

    def stop(self) -> None:
        self._stopping = True
        self.server.close()
        self._thread.join(1.0)
