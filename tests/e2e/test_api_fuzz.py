"""Property-based API fuzzing (schemathesis) of both services from their published OpenAPI documents
(docs/contracts/, which tests/unit/test_contracts.py keeps equal to what the apps serve), against a running
system: every answer must be documented (status, content type, headers, body schema), no input may give a 5xx,
and what the document allows must be accepted. A short budget per operation keeps it in `make test`."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case

from tests.support import ROOT, System

CONTRACTS = ROOT / "docs" / "contracts"
DEFAULT_ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]  # schemathesis's own list
# What a schema cannot say, answered with a documented error to input that fits the schema: `after` is an
# opaque cursor (one this API did not make is 400 invalid_cursor), and a flows or funnel range must run forwards and
# stay within 10 years and 5,000 buckets (422 invalid_range); a health fit or backtest needs enough customers
# with orders and a cutoff in the past (422 too_few_customers, cutoff_in_future); a prospect import's body is
# a CSV or NDJSON file whose header and lines the schema does not describe (400, 415).
CONFIG = schemathesis.Config.from_dict(
    {
        "operations": [
            {
                "include-name": "POST /v1/health/model/fit",
                "checks": {"positive_data_acceptance": {"expected-statuses": [*DEFAULT_ACCEPTED, "422"]}},
            },
            {
                "include-name": "POST /v1/health/backtest",
                "checks": {"positive_data_acceptance": {"expected-statuses": [*DEFAULT_ACCEPTED, "422"]}},
            },
            {
                "include-name": "GET /v1/funnel",
                "checks": {"positive_data_acceptance": {"expected-statuses": [*DEFAULT_ACCEPTED, "422"]}},
            },
            {
                "include-name": "POST /v1/prospects",
                "checks": {"positive_data_acceptance": {"expected-statuses": [*DEFAULT_ACCEPTED, "400", "415"]}},
            },
            {
                "include-name": "GET /v1/customers",
                "checks": {"positive_data_acceptance": {"expected-statuses": [*DEFAULT_ACCEPTED, "400"]}},
            },
            {
                "include-name": "GET /v1/flows",
                "checks": {"positive_data_acceptance": {"expected-statuses": [*DEFAULT_ACCEPTED, "422"]}},
            },
        ]
    }
)
SCORING = schemathesis.openapi.from_path(CONTRACTS / "openapi-scoring.json", config=CONFIG)
INGEST = schemathesis.openapi.from_path(CONTRACTS / "openapi-ingest.json")
BUDGET = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@SCORING.parametrize()
@BUDGET
def test_the_scoring_api_keeps_its_openapi_document(case: Case, system: System) -> None:
    case.call_and_validate(base_url=system.url("scoring", ""))


@INGEST.parametrize()
@BUDGET
def test_the_ingest_api_keeps_its_openapi_document(case: Case, system: System) -> None:
    case.call_and_validate(base_url=system.url("ingest", ""))
