"""Number management, by concern: the organisation tree and feature sets (``tree``), listing and delisting
numbers and their jobs (``listing``), reading numbers and the look-ups of listed ones (``queries``), and what they
share (``checks``). Free of HTTP.

This module is the domain's public face for routes, jobs and other domains.
"""

from callerid.numbers.checks import (
    CHUNK,
    JOB_KIND,
    NUMBER_STATES_LOCK,
    VISIBLE_STATES,
    NumbersError,
)
from callerid.numbers.listing import (
    DELIST_BUCKETS,
    LIST_BUCKETS,
    Classification,
    delist_numbers_from,
    finish_job,
    list_numbers_into,
    split_numbers,
)
from callerid.numbers.queries import (
    ListedIdentity,
    ListedNumber,
    NumberView,
    list_numbers,
    listed_identity,
    listed_number,
)
from callerid.numbers.tree import (
    FeatureSetView,
    TreeFilters,
    calling_operation,
    create_department,
    create_feature_set,
    create_operation,
    create_process,
    feature_set_of,
    feature_set_view,
    list_feature_sets,
    set_feature_set_status,
    set_secure_branding,
)

__all__ = [
    "CHUNK",
    "DELIST_BUCKETS",
    "JOB_KIND",
    "LIST_BUCKETS",
    "NUMBER_STATES_LOCK",
    "VISIBLE_STATES",
    "Classification",
    "FeatureSetView",
    "ListedIdentity",
    "ListedNumber",
    "NumberView",
    "NumbersError",
    "TreeFilters",
    "calling_operation",
    "create_department",
    "create_feature_set",
    "create_operation",
    "create_process",
    "delist_numbers_from",
    "feature_set_of",
    "feature_set_view",
    "finish_job",
    "list_feature_sets",
    "list_numbers",
    "list_numbers_into",
    "listed_identity",
    "listed_number",
    "set_feature_set_status",
    "set_secure_branding",
    "split_numbers",
]
