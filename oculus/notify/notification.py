"""One alert notification, as the rule engine hands it to the dispatcher and as the deliveries table stores it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

LOG_CHANNEL = "log"


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass
class Notification:
    """One alert notification: a rule instance fired (or fired again) or resolved."""

    rule: str
    instance: str
    state: str          # firing or resolved
    severity: str
    message: str
    ts: datetime        # when the transition happened
    value: float | None = None
    labels: dict = field(default_factory=dict)
    channels: tuple = (LOG_CHANNEL,)
    reason: str | None = None  # "repeat" or "cooldown over" for a notification without a state change
    started_at: datetime | None = None  # when the alert started firing
    id: str = field(default_factory=new_id)

    @property
    def duration(self) -> float | None:
        """Seconds from the start of firing to this notification, or None when the start is unknown."""
        if self.started_at is None:
            return None
        return max(0.0, (self.ts - self.started_at).total_seconds())

    def delivery_id(self, channel: str) -> str:
        return f"{self.id}:{channel}"

    def to_dict(self) -> dict:
        """Return the JSON-ready form stored in deliveries.content."""
        return {
            "id": self.id, "rule": self.rule, "instance": self.instance, "state": self.state,
            "severity": self.severity, "message": self.message, "ts": self.ts.isoformat(),
            "value": self.value, "labels": self.labels, "channels": list(self.channels), "reason": self.reason,
            "started_at": self.started_at.isoformat() if self.started_at else None,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Notification:
        started = data.get("started_at")
        return cls(data["rule"], data.get("instance", ""), data["state"], data["severity"], data.get("message", ""),
                   datetime.fromisoformat(data["ts"]), data.get("value"), dict(data.get("labels") or {}),
                   tuple(data.get("channels") or (LOG_CHANNEL,)), data.get("reason"),
                   datetime.fromisoformat(started) if started else None, data["id"])
