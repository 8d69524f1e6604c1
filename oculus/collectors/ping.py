"""ICMP echo probe: average round-trip time and packet loss."""

from __future__ import annotations

import time

import icmplib

from oculus.collectors.base import Collector, Reading
from oculus.config.schema import REQUIRED, Field, choice, duration, integer, text
from oculus.config.values import format_duration

PERMISSION_HINT = (
    "ICMP sockets are not permitted: run Oculus as root, grant it CAP_NET_RAW "
    "(AmbientCapabilities=CAP_NET_RAW under systemd), or allow unprivileged ping with "
    "sysctl -w net.ipv4.ping_group_range='0 2147483647'"
)


class PingCollector(Collector):
    TYPE = "ping"
    FIELDS = (
        Field("host", text, REQUIRED, "Host name, IPv4 or IPv6 address (names are resolved on every run)."),
        Field("count", integer(1, 100), 3, "Echo requests sent per run."),
        Field("packet_interval", duration(0.01), 0.2, "Time between two echo requests of one run."),
        Field("family", choice("auto", "ipv4", "ipv6"), "auto", "Address family used to resolve a host name."),
    )

    def symbols(self) -> list[str]:
        return [self.symbol("rtt_ms"), self.symbol("loss_pct")]

    def collect(self, deadline: float) -> list[Reading]:
        options = self.options
        host = options["host"]
        count = options["count"]
        budget = deadline - time.monotonic()
        # Each reply may wait up to what is left after the send intervals.
        reply_timeout = max(0.05, budget - options["packet_interval"] * (count - 1))
        family = {"auto": None, "ipv4": 4, "ipv6": 6}[options["family"]]

        try:
            result = self._ping(host, count, options["packet_interval"], reply_timeout, family)
        except icmplib.NameLookupError:
            return self.failed(f"DNS lookup failed for {host}")
        except icmplib.SocketPermissionError:
            return self.failed(PERMISSION_HINT)
        except icmplib.SocketAddressError as exc:
            return self.failed(f"invalid address {host}: {exc}")
        except UnicodeError:  # the IDNA codec rejects empty or over-long labels before any lookup
            return self.failed(f"invalid host name {host!r}")
        except (icmplib.ICMPLibError, OSError) as exc:
            return self.failed(f"ping failed: {exc}")

        tags = {"address": result.address}
        loss_pct = result.packet_loss * 100.0
        if not result.is_alive:
            error = f"no reply from {host} within {format_duration(reply_timeout)} ({loss_pct:.0f}% loss)"
            return [
                Reading(self.symbol("rtt_ms"), None, False, error, tags),
                Reading(self.symbol("loss_pct"), loss_pct, False, error, dict(tags)),
            ]
        return [
            Reading(self.symbol("rtt_ms"), result.avg_rtt, True, None, tags),
            Reading(self.symbol("loss_pct"), loss_pct, True, None, dict(tags)),
        ]

    @staticmethod
    def _ping(host, count, interval, timeout, family):
        """Ping with a raw socket (root or CAP_NET_RAW), else with an unprivileged ICMP datagram socket.

        The datagram socket works without privileges only where
        net.ipv4.ping_group_range includes the process's group.
        """
        try:
            return icmplib.ping(host, count=count, interval=interval, timeout=timeout,
                                family=family, privileged=True)
        except icmplib.SocketPermissionError:
            return icmplib.ping(host, count=count, interval=interval, timeout=timeout,
                                family=family, privileged=False)
