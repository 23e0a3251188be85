"""Custom search attributes: what a reviewer filters on in the Temporal UI's list.

Kept current by the workflows at every step, so that
`ApplicationStep = "pre_verification" AND WaitingOn = "pre_verification_reviewer"` lists every
application waiting on the pre-verification reviewers. Registered by `make up`, by the test
fixtures and by the compose `temporal-setup` job (each from this one list).
"""

from temporalio.common import SearchAttributeKey

APPLICATION_KIND = SearchAttributeKey.for_keyword("ApplicationKind")
APPLICATION_STEP = SearchAttributeKey.for_keyword("ApplicationStep")
WAITING_ON = SearchAttributeKey.for_keyword("WaitingOn")
ORGANISATION_ID = SearchAttributeKey.for_keyword("OrganisationId")
# A live service's state: live, suspended, terminated (workflows/live_service.py).
LIVE_SERVICE_STATE = SearchAttributeKey.for_keyword("LiveServiceState")

ALL = (APPLICATION_KIND, APPLICATION_STEP, WAITING_ON, ORGANISATION_ID, LIVE_SERVICE_STATE)
