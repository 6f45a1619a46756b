"""The durable due-work runner: jobs stored in the database, claimed with a lease, retried, drained."""

from callerid.jobs.registry import JobContext, RetryLater, handler, registry
from callerid.jobs.service import enqueue, enqueue_many, enqueue_unique, wake_local_runners

__all__ = [
    "JobContext",
    "RetryLater",
    "enqueue",
    "enqueue_many",
    "enqueue_unique",
    "handler",
    "registry",
    "wake_local_runners",
]
