"""Webhooks (SPEC §9): configs, events, signed deliveries with durable retries, failure e-mails.

Other domains call :func:`callerid.webhooks.service.emit_event` to create events.
"""
