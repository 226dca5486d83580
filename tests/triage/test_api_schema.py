"""Schemathesis against the served OpenAPI document: no 5xx, and every response matches the schema.

The document is loaded from the running ASGI application (``config.asgi``),
and every operation is exercised with generated valid and invalid inputs,
authenticated with a real key, against a real pinned agent on the emulator.
The application runs on schemathesis's own event-loop thread, so the data it
reads must be committed: these tests use a transactional database.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.triage.support import People, ProductionAgent
from triage import services
from triage.models import TriageRequest

# Every operation with 60 generated examples, against a transactional database.
pytestmark = pytest.mark.slow


def _application():
    from config.asgi import application

    return application


# Loaded from the application itself (no database needed to serve the document).
schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", _application())


@pytest.fixture
def served_schema(transactional_db, emulator, settings):
    settings.PROMPTCTL_RATE_LIMITER = "off"
    emulator.configure(latency=0.0)
    people = People()
    production = ProductionAgent(people)
    secret = services.api_key_create(name="schemathesis", actor=people.admin, all_agents=True).secret
    schema.secret = secret
    schema.production = production
    return schema


@schema.parametrize()
@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case, served_schema):
    # A generated Host header is not API input: Django refuses hosts outside ALLOWED_HOSTS with its own
    # HTML 400 before any URL is resolved (deployment configuration, not this API's contract).
    for name in [name for name in (case.headers or {}) if name.lower() == "host"]:
        del case.headers[name]
    response = case.call(headers={"Authorization": f"Bearer {served_schema.secret}"})
    # Every default check except "valid data is accepted": a valid-looking agent name or job id
    # that does not exist is rightly a 404, which that check would count as a failure.
    case.validate_response(response, excluded_checks=[positive_data_acceptance])
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} answered {response.status_code}: {response.text[:500]}"
    )


def test_generated_traffic_reached_the_agent(served_schema, emulator):
    """The schema run above is not vacuous: valid generated tickets are served and logged."""
    response = (
        served_schema["/api/v1/triage"]["POST"]
        .Case(body={"subject": "Refund", "body": "Charged twice"}, media_type="application/json")
        .call(headers={"Authorization": f"Bearer {served_schema.secret}"})
    )
    assert response.status_code == 200, response.text
    assert TriageRequest.objects.filter(pk=response.json()["request_id"]).exists()
