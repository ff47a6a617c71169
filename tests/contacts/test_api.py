"""``/api/v1/contacts``: staff only, OSDI-style fields, problem details, and the CSV import."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from campaign.auth import tokens
from campaign.auth.models import User
from campaign.contacts import api as contacts_api
from campaign.contacts import services
from campaign.contacts.models import Contact
from campaign.contacts.services import ContactData
from campaign.extensions import db

CSV = (
    "country_code,email,first_name,tags\nFR,jean@missions.example.org,Jean,P5;NY\nGB,ann@missions.example.org,Ann,P5\n"
)


@pytest.fixture
def headers(app, make_account):
    def make(role: str = "coordinator") -> dict[str, str]:
        account = make_account(role)
        with app.app_context():
            _, raw = tokens.create_token(db.session.get(User, account.id), "tests")
            db.session.commit()
        return {"Authorization": f"Bearer {raw}"}

    return make


@pytest.fixture
def staff(headers):
    return headers("coordinator")


@pytest.fixture
def contact_id(app, database):
    with app.app_context():
        contact = services.create_contact(
            ContactData(
                country="FR", email="pm.fr@missions.example.org", given_name="Claire", tags=["P5"], language="fr"
            )
        )
        db.session.commit()
        return contact.id


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.content_type == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status
    return body


@pytest.mark.parametrize("role", ["member"])
def test_members_may_not_use_contacts(client, headers, contact_id, role):
    member = headers(role)
    assert_problem(client.get("/api/v1/contacts", headers=member), 403)
    assert_problem(client.get(f"/api/v1/contacts/{contact_id}", headers=member), 403)
    assert_problem(client.post("/api/v1/contacts/import", data=CSV, content_type="text/csv", headers=member), 403)
    assert_problem(client.get("/api/v1/contacts"), 401)


def test_admins_may(client, headers):
    assert client.get("/api/v1/contacts", headers=headers("admin")).status_code == 200


def test_read_a_contact_with_osdi_names(client, staff, contact_id):
    body = client.get(f"/api/v1/contacts/{contact_id}", headers=staff).get_json()
    assert body["email"] == "pm.fr@missions.example.org"
    assert (body["given_name"], body["honorific_prefix"], body["languages_spoken"]) == ("Claire", "", ["fr"])
    assert (body["tags"], body["suppression"], body["timezone"]) == (["P5"], None, "America/New_York")
    assert {"created_date", "modified_date", "last_verified_date", "suppressed_date"} <= set(body)
    assert_problem(client.get("/api/v1/contacts/999999", headers=staff), 404)


def test_list_filters_and_pages(app, client, staff, contact_id):
    with app.app_context():
        for n in range(3):
            services.create_contact(ContactData(country="MX", email=f"mx{n}@example.org", language="es"))
        services.suppress(services.get_by_email("mx0@example.org"), "bounced")
        db.session.commit()
    body = client.get("/api/v1/contacts?per_page=2", headers=staff).get_json()
    assert (body["total"], body["page"], body["per_page"], len(body["items"])) == (4, 1, 2, 2)

    def emails(query: str) -> list[str]:
        response = client.get(f"/api/v1/contacts?{query}", headers=staff)
        assert response.status_code == 200, response.get_data(as_text=True)
        return [item["email"] for item in response.get_json()["items"]]

    assert emails("country=fr") == ["pm.fr@missions.example.org"]
    assert emails("tag=p5&language=fr") == ["pm.fr@missions.example.org"]
    assert emails("q=mx1") == ["mx1@example.org"]
    assert emails("suppression=bounced") == emails("suppression=suppressed") == ["mx0@example.org"]
    assert len(emails("suppression=deliverable")) == 3
    assert_problem(client.get("/api/v1/contacts?suppression=lost", headers=staff), 422)
    assert_problem(client.get("/api/v1/contacts?language=de", headers=staff), 422)


def test_create(client, staff):
    data = {"email": "Pm.CN@Missions.example.org", "country": "cn", "given_name": "Mingyuan", "language": "zh",
            "honorific_prefix": "H.E.", "tags": ["P5", "p5", "NY"], "salutation": "Excellency,"}  # fmt: skip
    response = client.post("/api/v1/contacts", json=data, headers=staff)
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    assert (body["email"], body["country"], body["honorific_prefix"], body["tags"]) == (
        "pm.cn@missions.example.org", "CN", "H.E.", ["NY", "P5"],
    )  # fmt: skip
    assert "already exists" in assert_problem(client.post("/api/v1/contacts", json=data, headers=staff), 409)["detail"]


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"country": "FR"}, "errors"),
        ({"email": "a@example.org", "country": "XX"}, "ISO 3166"),
        ({"email": "not an email", "country": "FR"}, "not valid"),
        ({"email": "a@example.org", "country": "FR", "given_name": "Jean\r\nBcc: x@example.org"}, "errors"),
        ({"email": "a@example.org", "country": "FR", "language": "de"}, "errors"),
        ({"email": "a@example.org", "country": "FR", "timezone": "Mars/Base"}, "IANA"),
        ({"email": "a@example.org", "country": "FR", "suppression": "bounced"}, "errors"),
    ],
)
def test_create_refuses(client, staff, data, where):
    body = assert_problem(client.post("/api/v1/contacts", json=data, headers=staff), 422)
    assert where in body or where in body.get("detail", "")


def test_update(app, client, staff, contact_id):
    url = f"/api/v1/contacts/{contact_id}"
    response = client.patch(url, json={"family_name": "Dumoulin", "tags": ["Geneva"]}, headers=staff)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert (body["given_name"], body["family_name"], body["tags"], body["language"]) == (
        "Claire", "Dumoulin", ["Geneva"], "fr",
    )  # fmt: skip
    body = client.patch(url, json={"suppression": "unsubscribed", "suppression_reason": "asked"}, headers=staff)
    assert (body.get_json()["suppression"], body.get_json()["suppression_reason"]) == ("unsubscribed", "asked")
    assert client.patch(url, json={"suppression": None}, headers=staff).get_json()["suppression"] is None
    with app.app_context():
        services.create_contact(ContactData(country="GB", email="other@example.org"))
        db.session.commit()
    assert_problem(client.patch(url, json={"email": "OTHER@example.org"}, headers=staff), 409)
    assert_problem(client.patch(url, json={"country": "XX"}, headers=staff), 422)
    assert_problem(client.patch("/api/v1/contacts/999999", json={}, headers=staff), 404)
    with app.app_context():
        kinds = [event.kind for event in services.get_contact(contact_id).events]
    assert kinds == ["unsuppressed", "suppressed", "updated", "created"]


def test_delete(app, client, staff, contact_id):
    response = client.delete(f"/api/v1/contacts/{contact_id}", headers=staff)
    assert response.status_code == 204 and response.data == b""
    assert_problem(client.get(f"/api/v1/contacts/{contact_id}", headers=staff), 404)
    assert_problem(client.delete(f"/api/v1/contacts/{contact_id}", headers=staff), 404)


# --- import -------------------------------------------------------------------------------------


def post_csv(client, headers, data: str | bytes, query: str = "", content_type: str = "text/csv"):
    return client.post(f"/api/v1/contacts/import{query}", data=data, content_type=content_type, headers=headers)


def count(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(Contact))


def test_import_dry_run_then_for_real(app, client, staff):
    body = post_csv(client, staff, CSV, "?dry_run=1").get_json()
    assert (body["dry_run"], body["imported"], body["new"], body["total"]) == (True, False, 2, 2)
    assert count(app) == 0
    body = post_csv(client, staff, CSV, content_type="text/csv; charset=utf-8").get_json()
    assert (body["imported"], body["new"], body["rejected"], body["warnings"]) == (True, 2, [], [])
    assert count(app) == 2
    body = post_csv(client, staff, CSV).get_json()
    assert (body["unchanged"], body["new"]) == (2, 0)


def test_import_with_rejected_rows(app, client, staff):
    data = CSV + "XX,bad@example.org,,\n"
    response = post_csv(client, staff, data)
    assert response.status_code == 200
    body = response.get_json()
    assert body["imported"] is False
    assert body["rejected"] == [
        {"line": 4, "email": "bad@example.org", "reason": "Country 'XX' is not an ISO 3166-1 alpha-2 code (e.g. FR)."}
    ]
    assert count(app) == 0
    body = post_csv(client, staff, data, "?accept_valid=1").get_json()
    assert (body["imported"], body["new"]) == (True, 2)
    assert count(app) == 2


def test_import_problems(app, client, staff, monkeypatch):
    body = assert_problem(post_csv(client, staff, "café,x\n".encode("latin-1")), 422)
    assert "not UTF-8" in body["detail"]
    assert "lacks the required" in assert_problem(post_csv(client, staff, "name\nx\n"), 422)["detail"]
    assert_problem(post_csv(client, staff, "", ""), 422)
    assert "text/csv" in assert_problem(client.post("/api/v1/contacts/import", json={}, headers=staff), 415)["detail"]
    monkeypatch.setattr(contacts_api, "MAX_BYTES", 100)
    assert_problem(post_csv(client, staff, CSV + "FR,x@example.org,,\n" * 10), 413)
    assert count(app) == 0


def test_the_document_describes_the_csv_body(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    operation = spec["paths"]["/api/v1/contacts/import"]["post"]
    assert list(operation["requestBody"]["content"]) == ["text/csv"]
    assert {p["name"] for p in operation["parameters"]} == {"dry_run", "accept_valid"}
    assert {"/api/v1/contacts", "/api/v1/contacts/{id}"} <= set(spec["paths"])
    assert {"get", "patch", "delete"} <= set(spec["paths"]["/api/v1/contacts/{id}"])
