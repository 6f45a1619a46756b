"""Caller-ID lookup for an incoming call, with a signed PASSporT call assertion (RFC 8225, RFC 9795)."""
