"""The durable due-work runner: jobs stored in the database, claimed with a lease, retried, drained."""

from callerid.jobs.registry import JobContext, RetryLater, handler, registry
from callerid.jobs.service import enqueue, enqueue_in, enqueue_many, enqueue_step, enqueue_unique

__all__ = [
    "JobContext",
    "RetryLater",
    "enqueue",
    "enqueue_in",
    "enqueue_many",
    "enqueue_step",
    "enqueue_unique",
    "handler",
    "registry",
]
