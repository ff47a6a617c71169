import pytest
import sqlalchemy as sa

from campaign.auth import tokens
from campaign.auth.models import ApiToken, Organisation, User
from campaign.extensions import db
from tests import factories


@pytest.fixture
def token_for(app, database):
    def make(account: factories.Account) -> str:
        with app.app_context():
            _, raw = tokens.create_token(db.session.get(User, account.id), "tests")
            db.session.commit()
        return raw

    return make


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_me_answers_for_the_token_holder(client, member, token_for):
    response = client.get("/api/v1/me", headers=bearer(token_for(member)))
    assert response.status_code == 200
    body = response.get_json()
    assert body["email"] == member.email
    assert body["role"] == "member"
    assert body["organisation"] == member.organisation_slug


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer",
        "Bearer ",
        "Bearer dm_not-a-real-token",
        "Basic dXNlcjpwYXNz",
        "Token dm_x",
        "Bearer " + "x" * 5000,
    ],
)
def test_requests_without_a_valid_token_are_refused(client, header):
    response = client.get("/api/v1/me", headers={"Authorization": header} if header else {})
    assert response.status_code == 401
    assert response.content_type == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.get_json()["status"] == 401


def test_the_session_cookie_is_not_accepted(client, auth, admin):
    auth.login(admin)
    assert client.get("/admin").status_code == 200  # signed in for HTML pages
    assert client.get("/api/v1/me").status_code == 401


def test_a_token_works_beside_a_visitors_session_cookie(separate_app):
    """Clients that keep cookies (``requests.Session``, Postman, a page's own ``fetch``) send
    the session cookie a form gave them along with the token."""
    app = separate_app(WTF_CSRF_ENABLED=True)  # forms keep their CSRF token in the session
    with app.app_context():
        member = factories.Account.of(factories.user("member"))
        raw = tokens.create_token(db.session.get(User, member.id), "script")[1]
        db.session.commit()
    client = app.test_client()
    assert client.get("/password/forgot").status_code == 200
    assert client.get_cookie("session") is not None  # a visitor's session, not signed in
    me = client.get("/api/v1/me", headers=bearer(raw))
    assert me.status_code == 200 and me.get_json()["email"] == member.email
    assert "Set-Cookie" not in me.headers and client.get_cookie("session") is not None  # left as it was


def test_revoked_and_deactivated_tokens_stop_working(app, client, member, token_for):
    raw = token_for(member)
    assert client.get("/api/v1/me", headers=bearer(raw)).status_code == 200
    with app.app_context():
        tokens.revoke(db.session.scalar(sa.select(ApiToken)))
        db.session.commit()
    assert client.get("/api/v1/me", headers=bearer(raw)).status_code == 401
    raw = token_for(member)
    with app.app_context():
        db.session.execute(sa.update(User).where(User.id == member.id).values(active=False))
        db.session.commit()
    assert client.get("/api/v1/me", headers=bearer(raw)).status_code == 401


def test_tokens_are_stored_hashed(app, member, token_for):
    raw = token_for(member)
    with app.app_context():
        row = db.session.scalar(sa.select(ApiToken))
        assert raw not in (row.token_hash, row.prefix)
        assert raw.startswith(row.prefix)


def test_lists_are_paged(app, client, member, token_for):
    with app.app_context():
        for n in range(5):
            factories.organisation(f"Paging Org {n}", country="KE")
    headers = bearer(token_for(member))
    body = client.get("/api/v1/organisations?country=KE&per_page=2&page=2", headers=headers).get_json()
    assert body["page"] == 2 and body["per_page"] == 2 and body["total"] == 5
    assert [o["name"] for o in body["items"]] == ["Paging Org 2", "Paging Org 3"]
    assert set(body["items"][0]) == {"name", "slug", "country", "website", "member", "created_date"}
    assert client.get("/api/v1/organisations?page=99", headers=headers).get_json()["items"] == []


@pytest.mark.parametrize("query", ["per_page=0", "per_page=101", "page=0", "page=abc", "member=maybe", "country=XX"])
def test_bad_query_parameters_are_problems(client, member, token_for, query):
    response = client.get(f"/api/v1/organisations?{query}", headers=bearer(token_for(member)))
    assert response.status_code == 422
    assert response.content_type == "application/problem+json"
    assert response.get_json()["errors"]["query"]


def test_members_cannot_manage_accounts(client, member, token_for):
    headers = bearer(token_for(member))
    assert client.get("/api/v1/users", headers=headers).status_code == 403
    created = client.post("/api/v1/organisations", headers=headers, json={"name": "Sneaky", "country": "FR"})
    assert created.status_code == 403
    assert created.content_type == "application/problem+json"


def test_admin_creates_an_organisation_and_its_representative(app, client, admin, token_for, outbox):
    headers = bearer(token_for(admin))
    org = client.post(
        "/api/v1/organisations",
        headers=headers,
        json={"name": "Mekong Rights Watch", "country": "KH", "website": "https://mrw.example.org", "member": True},
    )
    assert org.status_code == 201, org.get_data(as_text=True)
    slug = org.get_json()["slug"]
    user = client.post(
        "/api/v1/users",
        headers=headers,
        json={"email": "Rep@MRW.example.org", "name": "Sokha Chan", "role": "member", "organisation": slug},
    )
    assert user.status_code == 201, user.get_data(as_text=True)
    assert user.get_json()["email"] == "rep@mrw.example.org"
    assert "/password/reset/" in factories.text_of(outbox.only())
    again = client.post(
        "/api/v1/users", headers=headers, json={"email": "rep@mrw.example.org", "name": "X", "role": "admin"}
    )
    assert again.status_code == 409
    listed = client.get("/api/v1/users?role=member", headers=headers).get_json()
    assert [u["email"] for u in listed["items"]] == ["rep@mrw.example.org"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "X", "country": "ZZ"}, "country"),
        ({"country": "FR"}, "name"),
        ({"name": "Line\r\nBreak", "country": "FR"}, "name"),
        ({"name": "X", "country": "FR", "website": "javascript:alert(1)"}, "website"),
        ({"name": "X", "country": "FR", "member": "perhaps"}, "member"),
        ({"name": "X" * 201, "country": "FR"}, "name"),
    ],
)
def test_invalid_organisation_bodies(app, client, admin, token_for, body, field):
    response = client.post("/api/v1/organisations", headers=bearer(token_for(admin)), json=body)
    assert response.status_code == 422
    assert field in response.get_json()["errors"]["json"]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Organisation)) == 0


def test_non_json_body_is_a_problem(client, admin, token_for):
    response = client.post(
        "/api/v1/organisations", headers={**bearer(token_for(admin)), "Content-Type": "text/plain"}, data="name=x"
    )
    assert response.status_code == 415
    assert response.content_type == "application/problem+json"
    assert response.get_json()["detail"] == "Send the body with Content-Type: application/json."
    # A JSON type with parameters, or a +json one, is read; without a token the 401 comes first.
    for n, content_type in enumerate(("application/json; charset=utf-8", "application/merge-patch+json")):
        answer = client.post(
            "/api/v1/organisations",
            headers={**bearer(token_for(admin)), "Content-Type": content_type},
            data=f'{{"name": "Réseau JSON {n}", "country": "FR"}}',
        )
        assert answer.status_code == 201, answer.get_json()
    anonymous = client.post("/api/v1/organisations", headers={"Content-Type": "text/plain"}, data="name=x")
    assert anonymous.status_code == 401


def test_member_needs_an_existing_organisation(client, admin, token_for):
    headers = bearer(token_for(admin))
    missing = client.post(
        "/api/v1/users", headers=headers, json={"email": "m@example.org", "name": "M", "role": "member"}
    )
    assert missing.status_code == 422
    unknown = client.post(
        "/api/v1/users",
        headers=headers,
        json={"email": "m@example.org", "name": "M", "role": "member", "organisation": "no-such-org"},
    )
    assert unknown.status_code == 422
    assert "organisation" in unknown.get_json()["errors"]["json"]


def test_patch_user_and_last_admin_rule(client, admin, member, token_for):
    headers = bearer(token_for(admin))
    renamed = client.patch(f"/api/v1/users/{member.id}", headers=headers, json={"name": "Renamed"})
    assert renamed.status_code == 200 and renamed.get_json()["name"] == "Renamed"
    demoted = client.patch(f"/api/v1/users/{admin.id}", headers=headers, json={"role": "coordinator"})
    assert demoted.status_code == 422
    assert "last active admin" in demoted.get_json()["detail"]
    assert client.get("/api/v1/users/999999", headers=headers).status_code == 404


def test_unknown_api_paths_and_methods_are_problems(client):
    missing = client.get("/api/v1/nothing-here")
    assert missing.status_code == 404 and missing.content_type == "application/problem+json"
    wrong = client.delete("/api/v1/me")
    assert wrong.status_code == 405 and wrong.content_type == "application/problem+json"


def test_token_cli_prints_the_token_last(app, admin):
    result = app.test_cli_runner().invoke(args=["tokens", "create", admin.email, "--name", "crm"])
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    assert token.startswith("dm_")
    assert app.test_client().get("/api/v1/me", headers=bearer(token)).get_json()["email"] == admin.email
    unknown = app.test_cli_runner().invoke(args=["tokens", "create", "nobody@example.org"])
    assert unknown.exit_code != 0 and "no active user" in unknown.output


def test_account_page_creates_lists_and_revokes_tokens(app, client, auth, member):
    auth.login(member)
    created = client.post("/account/tokens", data={"name": "Spreadsheet sync"}, follow_redirects=True)
    page = created.get_data(as_text=True)
    assert "Spreadsheet sync" in page
    with app.app_context():
        row = db.session.scalar(sa.select(ApiToken))
    token = page.split('data-testid="new-token">')[1].split("<")[0]
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
    assert 'data-testid="new-token"' not in client.get("/account").get_data(as_text=True)  # shown once
    client.post(f"/account/tokens/{row.id}/revoke")
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401


def test_a_user_cannot_revoke_someone_elses_token(app, client, auth, member, make_account, token_for):
    other = make_account("member")
    token_for(other)
    with app.app_context():
        row = db.session.scalar(sa.select(ApiToken))
    auth.login(member)
    assert client.post(f"/account/tokens/{row.id}/revoke").status_code == 404


def test_patch_moves_a_member_to_another_organisation(app, client, admin, member, token_for):
    with app.app_context():
        other = factories.organisation("Moved To Org", country="KE")
        slug = other.slug
    response = client.patch(f"/api/v1/users/{member.id}", headers=bearer(token_for(admin)), json={"organisation": slug})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["organisation"] == slug


@pytest.mark.parametrize("name", ["Ada\x00", "Ada\tLovelace", "Ada\r\nBcc: x@y"])
def test_names_with_control_characters_are_refused(client, admin, token_for, name):
    """PostgreSQL stores no NUL (it was a 500), and CR and LF reach mail headers."""
    headers = bearer(token_for(admin))
    user = client.post("/api/v1/users", headers=headers, json={"email": "u@example.org", "name": name, "role": "admin"})
    organisation = client.post("/api/v1/organisations", headers=headers, json={"name": name, "country": "FR"})
    for answer in (user, organisation):
        assert answer.status_code == 422
        assert answer.get_json()["errors"]["json"]["name"] == ["Must be a single line."]
