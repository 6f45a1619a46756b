"""Prometheus metrics: requests by route and status, and a latency histogram.

With several ``serve`` processes, prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``,
set by ``callerid serve --workers N``) aggregates every process's counts on ``/metrics``.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client import REGISTRY as DEFAULT_REGISTRY

HTTP_REQUESTS = Counter("callerid_http_requests_total", "HTTP requests answered", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "callerid_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
# Call signals phones reported (POST /app/v1/call-signals), new ones only (not duplicates, not ignored callers),
# counted once their rows are committed (callerid.analytics.signals).
CALL_SIGNALS = Counter("callerid_call_signals_total", "Call signals accepted from phones, by kind", ["kind"])
# Lookups refused by secure branding (possible spoofed calls), counted once their row is committed
# (callerid.analytics.blocked). No labels: per-account figures are the analytics API's.
BLOCKED_ATTEMPTS = Counter("callerid_blocked_attempts_total", "Caller-ID lookups blocked by secure branding")
# Call records by delivery outcome (delivered or the SPEC §8 reason), counted once their outcome is committed: an R2
# group commit, a delivered batch (callerid.personalisation); one increment per outcome and write, not per record.
CALL_RECORDS = Counter("callerid_call_records_total", "Call records by delivery outcome", ["outcome"])
CALL_ME_BACK_REQUESTS = Counter("callerid_call_me_back_requests_total", "Call Me Back requests stored")
SURVEY_RESPONSES = Counter("callerid_survey_responses_total", "Survey responses stored")
# Webhook events that reached a final state: success, or failed after the last retry (test events not counted).
WEBHOOK_DELIVERIES = Counter("callerid_webhook_deliveries_total", "Webhook deliveries by final result", ["result"])


def render_metrics() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(DEFAULT_REGISTRY), CONTENT_TYPE_LATEST
