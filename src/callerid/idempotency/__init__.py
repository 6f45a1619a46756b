"""Idempotent POSTs: the ``Idempotency-Key`` header (an extension; reference clients see no change)."""
