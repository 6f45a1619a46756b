"""Call records, by concern: the validation rules (``rules``), storing batches and real-time records (``storing``),
delivering batches (``delivery``) and reading records and identities (``reading``). Free of HTTP.

This module is the domain's public face for routes, jobs and other domains.
"""

from callerid.personalisation.delivery import deliver_batch, fail_pending
from callerid.personalisation.reading import ActiveIdentity, active_identity, batch_records
from callerid.personalisation.rules import (
    BATCH_FIELD,
    BatchShapeError,
    CheckedRecord,
    batch_records_of,
    check_record,
    epoch_ms,
    label_ids_of,
    new_record_id,
)
from callerid.personalisation.storing import (
    DELIVER_BATCH_JOB,
    RealtimeResult,
    V1Result,
    push_message,
    submit_realtime_v2,
    submit_v1,
    submit_v2_batch,
)

__all__ = [
    "BATCH_FIELD",
    "DELIVER_BATCH_JOB",
    "ActiveIdentity",
    "BatchShapeError",
    "CheckedRecord",
    "RealtimeResult",
    "V1Result",
    "active_identity",
    "batch_records",
    "batch_records_of",
    "check_record",
    "deliver_batch",
    "epoch_ms",
    "fail_pending",
    "label_ids_of",
    "new_record_id",
    "push_message",
    "submit_realtime_v2",
    "submit_v1",
    "submit_v2_batch",
]
