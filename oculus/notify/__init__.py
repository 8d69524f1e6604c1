"""Notifications: the queue between the rule engine and the channels, the dispatcher and the channel workers."""

from oculus.notify.dispatcher import NotificationDispatcher
from oculus.notify.notification import Notification

__all__ = ["Notification", "NotificationDispatcher"]
