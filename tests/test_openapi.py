"""The API answers as its OpenAPI document says, whatever schemathesis sends."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from campaign.auth import tokens
from campaign.auth.models import User
from campaign.extensions import db
from tests import factories


@pytest.fixture
def api_schema(app, database):
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)


@pytest.fixture
def admin_token(app, make_account):
    accounts = [make_account("admin"), make_account("admin"), make_account("member")]
    with app.app_context():
        factories.organisation("Schema Test Org", country="BR")
        _, raw = tokens.create_token(db.session.get(User, accounts[0].id), "schemathesis")
        db.session.commit()
    return raw


def test_document_is_openapi_3_1_with_stable_paths(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec["openapi"] == "3.1.0"
    assert {"/api/v1/me", "/api/v1/organisations", "/api/v1/users", "/api/v1/users/{id}"} <= set(spec["paths"])
    assert all(not path.endswith("/") for path in spec["paths"])
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    error = spec["components"]["responses"]["UNAUTHORIZED"]["content"]
    assert list(error) == ["application/problem+json"]


def test_api_page_renders_the_document(client):
    page = client.get("/api").get_data(as_text=True)
    assert "/api/v1/openapi.json" in page
    assert "GET</strong> /api/v1/organisations" in page


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_document(case, admin_token):
    case.call_and_validate(
        headers={"Authorization": f"Bearer {admin_token}"},
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance],
    )
