"""Phones: device registration, the WebSocket push stream and per-record delivery outcomes (SPEC §8)."""
