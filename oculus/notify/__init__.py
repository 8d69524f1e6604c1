"""Notifications: the queue between the rule engine and the channels, and the dispatcher thread."""

from oculus.notify.dispatcher import Notification, NotificationDispatcher

__all__ = ["Notification", "NotificationDispatcher"]
