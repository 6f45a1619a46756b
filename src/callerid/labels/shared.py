"""What other domains may use of labels: the table to join in their reads (never to write), and the look-up of one
account's label. Everything else about labels goes through ``labels.service`` and ``labels.queries``."""

from __future__ import annotations

from callerid.labels.models import DYNAMIC, STATIC, Label
from callerid.labels.queries import get_label

# A Core table, not the ORM entity: joined in hot reads, rows come back without the ORM's loading overhead.
LABELS = Label.__table__

__all__ = ["DYNAMIC", "LABELS", "STATIC", "get_label"]
