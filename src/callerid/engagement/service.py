"""Engagement, by concern: Call Me Back configs and requests (``cmb``), surveys and their answers (``surveys``),
the CMB/UF log exports (``exports``) and what they share (``checks``). Free of HTTP.

This module is the domain's public face for routes, jobs, the CLI and other domains.
"""

from callerid.engagement.checks import (
    DEFAULT_CMB_CONFIG_NAME,
    MAX_QUESTION_LENGTH,
    MAX_QUESTIONS,
    MAX_SLOT,
    NA,
    NO_CMB,
    NO_FEEDBACK,
    NOT_AVAILABLE,
    SURVEY_TRIGGERS,
    EngagementError,
    NothingInRange,
)
from callerid.engagement.cmb import (
    DEFAULT_CMB_CONFIG,
    EffectiveCmbConfig,
    cmb_config_of,
    parse_windows,
    set_cmb_config,
    submit_call_me_back,
)
from callerid.engagement.exports import (
    Download,
    cmb_range,
    csv_lines,
    feedback_range,
    find_download,
    issue_cmb_export,
    issue_feedback_export,
)
from callerid.engagement.surveys import (
    create_survey,
    list_surveys,
    submit_survey_answers,
    survey_for_number,
)

__all__ = [
    "DEFAULT_CMB_CONFIG",
    "DEFAULT_CMB_CONFIG_NAME",
    "MAX_QUESTIONS",
    "MAX_QUESTION_LENGTH",
    "MAX_SLOT",
    "NA",
    "NOT_AVAILABLE",
    "NO_CMB",
    "NO_FEEDBACK",
    "SURVEY_TRIGGERS",
    "Download",
    "EffectiveCmbConfig",
    "EngagementError",
    "NothingInRange",
    "cmb_config_of",
    "cmb_range",
    "create_survey",
    "csv_lines",
    "feedback_range",
    "find_download",
    "issue_cmb_export",
    "issue_feedback_export",
    "list_surveys",
    "parse_windows",
    "set_cmb_config",
    "submit_call_me_back",
    "submit_survey_answers",
    "survey_for_number",
]
