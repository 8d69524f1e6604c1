"""`oculus notify test CHANNEL`: one test alert through one channel, with the outcome printed."""

from __future__ import annotations

import time

from oculus.config import unknown_channel_message
from oculus.notify.channels import ChannelError, build_channel
from oculus.notify.notification import Notification
from oculus.storage import utc_now

TEST_RULE = "oculus_test"


def send_test(config, name: str, severity: str, out, err) -> int:
    """Send the test alert once, without retries; return 0 when delivered, 1 when not, 2 for an unknown channel."""
    spec = config.channels.get(name)
    if spec is None:
        err(f"{config.source}: {unknown_channel_message(name, config.channels)}")
        return 2
    base_url = config.notifications.base_url or config.self_url
    try:
        channel = build_channel(spec, base_url)
    except ChannelError as exc:
        err(f"{name} ({spec.type}): not usable: {exc}")
        return 1

    now = utc_now()
    notification = Notification(TEST_RULE, "", "firing", severity,
                                f"Test notification from Oculus through the channel {name}; no action needed.",
                                now, 1.0, {"channel": name}, (name,), started_at=now)
    started = time.monotonic()
    try:
        outcome = channel.send([notification])
    finally:
        channel.close()
    elapsed = time.monotonic() - started

    if outcome.delivered:
        out(f"{name} ({spec.type}): delivered in {elapsed:.1f}s")
        return 0
    if outcome.permanent:
        advice = "retrying will not help; check the channel's settings"
    elif outcome.retry_after is not None:
        advice = f"the service asks to wait {outcome.retry_after:g}s before the next attempt"
    else:
        advice = "Oculus would retry this"
    err(f"{name} ({spec.type}): not delivered after {elapsed:.1f}s: {outcome.error} ({advice})")
    return 1
