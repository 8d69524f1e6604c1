"""TCP connect probe: latency of a full TCP handshake to host:port."""

from __future__ import annotations

import socket
import time

from oculus.collectors.base import Collector, Reading
from oculus.collectors.errors import describe_os_error
from oculus.config.schema import REQUIRED, Field, integer, text


class TcpCollector(Collector):
    TYPE = "tcp"
    FIELDS = (
        Field("host", text, REQUIRED, "Host name or IP address to connect to (resolved on every run)."),
        Field("port", integer(1, 65535), REQUIRED, "TCP port to connect to."),
    )

    @classmethod
    def describe_target(cls, options: dict) -> str:
        return f"{options['host']}:{options['port']}"

    def symbols(self) -> list[str]:
        return [self.symbol("rtt_ms")]

    def collect(self, deadline: float) -> list[Reading]:
        host, port = self.options["host"], self.options["port"]
        timeout = self.spec.timeout
        tags = {"target": f"{host}:{port}"}

        # Resolve separately so a DNS failure is reported as such, not as a connect error.
        try:
            addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            return self.failed(describe_os_error(exc, host, timeout), **tags)
        except UnicodeError:  # the IDNA codec rejects empty or over-long labels before any lookup
            return self.failed(f"invalid host name {host!r}", **tags)

        error = "no address to connect to"
        for family, socktype, proto, _, address in addresses:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                error = describe_os_error(TimeoutError(), host, timeout)
                break
            started = time.perf_counter()
            try:
                with socket.socket(family, socktype, proto) as sock:
                    sock.settimeout(remaining)
                    sock.connect(address)
                    elapsed_ms = (time.perf_counter() - started) * 1000
            except OSError as exc:
                error = describe_os_error(exc, host, timeout)
                continue
            tags["address"] = address[0]
            return [Reading(self.symbol("rtt_ms"), elapsed_ms, True, None, tags)]
        return self.failed(error, **tags)
