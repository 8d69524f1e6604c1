"""Counters that layers outside the web server record into, exposed on GET /metrics.

The notification layer calls record_notification() after each delivery
attempt. These metrics are process-wide; each web app's registry includes them.
"""

from __future__ import annotations

from prometheus_client import Counter

NOTIFICATIONS = Counter(
    "oculus_notifications",
    "Notification delivery attempts, by channel and outcome (for example sent, failed, retrying).",
    ["channel", "outcome"],
    registry=None,
)

PROCESS_WIDE = (NOTIFICATIONS,)


def record_notification(channel: str, outcome: str) -> None:
    """Count one delivery attempt to `channel` that ended in `outcome`."""
    NOTIFICATIONS.labels(channel=channel, outcome=outcome).inc()
