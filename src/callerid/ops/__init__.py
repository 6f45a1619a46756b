"""Operations: structured logs, request ids, Prometheus metrics, health and readiness."""
