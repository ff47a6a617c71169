"""Admin pages for organisations and users: validation, invitations, the last admin, CSRF."""

import html
import re

import pyotp
import pytest
import sqlalchemy as sa

from campaign.audit import AuditEvent
from campaign.auth.models import Organisation, RecoveryCode, User
from campaign.extensions import db
from tests import factories
from tests.conftest import AuthActions

# --- helpers -------------------------------------------------------------------


def _text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def _org_form(**fields: str) -> dict[str, str]:
    form = {"name": "Peace Watch International", "slug": "", "country": "FR", "website": "", "member": "y"}
    form.update(fields)
    return {k: v for k, v in form.items() if v is not None}


def _organisations(app) -> list[Organisation]:
    with app.app_context():
        found = list(db.session.scalars(sa.select(Organisation).order_by(Organisation.id)))
        db.session.expunge_all()
        return found


def _user(app, email: str) -> User | None:
    with app.app_context():
        found = db.session.scalar(sa.select(User).where(User.email == email.lower()))
        db.session.expunge_all()
        return found


def _events(app, action: str) -> list[AuditEvent]:
    """Events recorded by someone signed in (fixtures record theirs with no actor)."""
    with app.app_context():
        query = sa.select(AuditEvent).where(AuditEvent.action == action, AuditEvent.actor_id.is_not(None))
        found = list(db.session.scalars(query))
        db.session.expunge_all()
        return found


def _signed_in(client) -> bool:
    return "Signed in as" in client.get("/").get_data(as_text=True)


def _user_form(**fields: str) -> dict[str, str]:
    form = {
        "email": "new.person@example.org",
        "name": "New Person",
        "role": "member",
        "organisation": "",
        "active": "y",
    }
    form.update(fields)
    return {k: v for k, v in form.items() if v is not None}


@pytest.fixture
def signed_in_admin(auth, admin):
    auth.login(admin)
    return admin


@pytest.fixture
def org(app, database):
    with app.app_context():
        made = factories.organisation("Sahel Peace Network", country="SN")
        return {"id": made.id, "slug": made.slug, "name": made.name}


# --- organisations -------------------------------------------------------------


def test_admin_creates_an_organisation(app, client, signed_in_admin):
    form = _org_form(website="https://peace-watch.example.org/about")
    response = client.post("/admin/organisations/new", data=form)
    assert response.headers["Location"] == "/admin/organisations/peace-watch-international"
    [org] = _organisations(app)
    assert (org.name, org.slug, org.country, org.member) == (
        "Peace Watch International",
        "peace-watch-international",
        "FR",
        True,
    )
    assert org.website == "https://peace-watch.example.org/about"
    [event] = _events(app, "organisation.create")
    assert (event.actor_id, event.object_id) == (signed_in_admin.id, str(org.id))
    listing = _text(client.get("/admin/organisations"))
    assert "Peace Watch International" in listing and "France" in listing


def test_new_organisation_form_renders(client, signed_in_admin):
    page = _text(client.get("/admin/organisations/new"))
    assert "Add an organisation" in page
    assert '<option value="SN">Senegal</option>' in page


@pytest.mark.parametrize("country", ["", "XX", "ZZ", "FRA", "fr", "EU", "F"])
def test_country_must_be_iso_3166(app, client, signed_in_admin, country):
    response = client.post("/admin/organisations/new", data=_org_form(country=country))
    assert response.status_code == 200
    assert _organisations(app) == []


@pytest.mark.parametrize(
    ("existing", "duplicate"),
    [
        ("Amnesty Intl.", "amnesty intl"),
        ("Médecins Sans Frontières", "MEDECINS SANS FRONTIERES"),
        ("Oxfam Ltd", "Oxfam"),
        ("The Peace Fund", "Peace Fund, Inc."),
        ("Human Rights Watch", "human-rights   watch!"),
        ("Friedensforum e.V.", "Friedensforum"),
        ("Ligue des Droits A.S.B.L.", "ligue des droits"),
        ("Société Civile GmbH", "societe civile"),
    ],
)
def test_names_that_differ_only_in_form_are_duplicates(app, client, signed_in_admin, existing, duplicate):
    assert client.post("/admin/organisations/new", data=_org_form(name=existing)).status_code == 302
    response = client.post("/admin/organisations/new", data=_org_form(name=duplicate))
    assert response.status_code == 200
    assert f"{existing} is already registered." in _text(response)
    assert [o.name for o in _organisations(app)] == [existing]


def test_different_names_are_not_duplicates(app, client, signed_in_admin):
    for name in ("Peace Watch", "Peace Watch Africa", "Watch Peace"):
        assert client.post("/admin/organisations/new", data=_org_form(name=name)).status_code == 302
    assert len(_organisations(app)) == 3


def test_slug_is_derived_and_made_unique(app, client, signed_in_admin):
    names = ["Peace Watch", "Peace Watch 和平", "Peace Watch 平和", "Мемориал", "Голос", "Ñandú Acción"]
    locations = [client.post("/admin/organisations/new", data=_org_form(name=n)).headers["Location"] for n in names]
    slugs = ["peace-watch", "peace-watch-2", "peace-watch-3", "organisation", "organisation-2", "nandu-accion"]
    assert locations == [f"/admin/organisations/{s}" for s in slugs]
    assert [o.slug for o in _organisations(app)] == slugs
    for slug, name in zip(slugs, names, strict=True):
        assert name in _text(client.get(f"/admin/organisations/{slug}"))


def test_slug_never_shadows_the_new_organisation_page(app, client, signed_in_admin):
    response = client.post("/admin/organisations/new", data=_org_form(name="New"))
    assert response.status_code == 302
    [org] = _organisations(app)
    assert org.slug != "new"
    assert response.headers["Location"] == f"/admin/organisations/{org.slug}"
    assert "<h1>New</h1>" in _text(client.get(response.headers["Location"]))
    explicit = client.post("/admin/organisations/new", data=_org_form(name="Something Else", slug="new"))
    assert explicit.status_code == 200
    assert len(_organisations(app)) == 1


def test_explicit_slug_is_used_and_must_be_free(app, client, signed_in_admin):
    first = client.post("/admin/organisations/new", data=_org_form(name="Peace Watch", slug="pw"))
    assert first.headers["Location"] == "/admin/organisations/pw"
    taken = client.post("/admin/organisations/new", data=_org_form(name="Another One", slug="pw"))
    assert taken.status_code == 200
    assert "The address 'pw' is taken by Peace Watch." in _text(taken)
    invalid = client.post("/admin/organisations/new", data=_org_form(name="Another One", slug="Not OK!"))
    assert "Use a-z, 0-9 and hyphens." in _text(invalid)
    assert [o.slug for o in _organisations(app)] == ["pw"]


@pytest.mark.parametrize(
    "website",
    [
        "not a url",
        "peace.example.org",
        "http://localhost/",
        "javascript://example.org/%0Aalert(1)",
        "ftp://files.example.org/",
        "data://example.org/text",
        "https://" + "a" * 300 + ".example.org/",
    ],
)
def test_bad_website_is_refused(app, client, signed_in_admin, website):
    response = client.post("/admin/organisations/new", data=_org_form(website=website))
    assert response.status_code == 200
    assert _organisations(app) == []


@pytest.mark.parametrize("name", ["Evil\r\nBcc: x@example.org", "Evil\nOrg", "Evil\rOrg", "Evil Org\n", "\r\n"])
def test_line_breaks_in_organisation_name_are_refused(app, client, signed_in_admin, name):
    response = client.post("/admin/organisations/new", data=_org_form(name=name))
    assert response.status_code == 200
    assert _organisations(app) == []


def test_admin_edits_an_organisation(app, client, signed_in_admin, org):
    form = _org_form(
        name="Sahel Human Security Network", slug=org["slug"], country="ML", website="https://s.example.org"
    )
    del form["member"]
    response = client.post(f"/admin/organisations/{org['slug']}", data=form)
    assert response.headers["Location"] == f"/admin/organisations/{org['slug']}"
    [saved] = _organisations(app)
    assert (saved.name, saved.country, saved.member, saved.website) == (
        "Sahel Human Security Network",
        "ML",
        False,
        "https://s.example.org",
    )
    [event] = _events(app, "organisation.update")
    assert event.actor_id == signed_in_admin.id
    assert event.details["before"]["name"] == "Sahel Peace Network"


def test_editing_keeps_its_own_name_and_refuses_anothers(app, client, signed_in_admin, org):
    with app.app_context():
        factories.organisation("Andean Peace Institute", country="PE")
    same = client.post(
        f"/admin/organisations/{org['slug']}", data=_org_form(name="SAHEL PEACE NETWORK", slug=org["slug"])
    )
    assert same.status_code == 302
    clash = client.post(f"/admin/organisations/{org['slug']}", data=_org_form(name="andean peace institute"))
    assert clash.status_code == 200
    assert "Andean Peace Institute is already registered." in _text(clash)
    bad_country = client.post(f"/admin/organisations/{org['slug']}", data=_org_form(name="Sahel", country="QQ"))
    assert bad_country.status_code == 200
    names = sorted(o.name for o in _organisations(app))
    assert names == ["Andean Peace Institute", "SAHEL PEACE NETWORK"]


def test_unknown_organisation_is_404(client, signed_in_admin):
    assert client.get("/admin/organisations/no-such-org").status_code == 404


# --- users ---------------------------------------------------------------------


def test_admin_creates_a_member_who_is_invited(app, client, signed_in_admin, org, outbox):
    form = _user_form(email="Lucia.Hernandez@Example.org", name="Lucía Hernández", organisation=str(org["id"]))
    response = client.post("/admin/users/new", data=form)
    assert response.headers["Location"] == "/admin/users"
    created = _user(app, "lucia.hernandez@example.org")
    assert (created.role, created.organisation_id, created.active) == ("member", org["id"], True)
    assert created.password_hash is None

    message = outbox.only()
    assert message["To"] == "lucia.hernandez@example.org"
    assert message["Subject"] == "Your Demarche account"
    text = factories.text_of(message)
    assert "Sahel Peace Network" in text
    link = re.search(r"http://localhost(/password/reset/\S+)", text)
    assert link, text

    [event] = _events(app, "user.create")
    assert (event.actor_id, event.actor_email) == (signed_in_admin.id, signed_in_admin.email)
    assert (event.object_type, event.object_id, event.details) == ("User", str(created.id), {"role": "member"})

    invited = app.test_client()
    assert "For lucia.hernandez@example.org." in _text(invited.get(link.group(1)))
    new = "hola desde la sierra madre"
    assert invited.post(link.group(1), data={"password": new, "confirm": new}).headers["Location"] == "/login"
    assert invited.post("/login", data={"email": "lucia.hernandez@example.org", "password": new}).status_code == 302


def test_new_user_page_preselects_an_organisation(client, signed_in_admin, org):
    page = _text(client.get(f"/admin/users/new?org={org['slug']}"))
    assert f'<option selected value="{org["id"]}">Sahel Peace Network</option>' in page


def test_member_needs_an_organisation(app, client, signed_in_admin, outbox):
    response = client.post("/admin/users/new", data=_user_form())
    assert response.status_code == 200
    assert "A member user represents an organisation: choose one." in _text(response)
    assert _user(app, "new.person@example.org") is None
    assert outbox.messages() == []
    assert _events(app, "user.create") == []


def test_coordinator_is_created_without_an_organisation(app, client, signed_in_admin, org, outbox):
    form = _user_form(role="coordinator", organisation=str(org["id"]))
    assert client.post("/admin/users/new", data=form).status_code == 302
    created = _user(app, "new.person@example.org")
    assert (created.role, created.organisation_id) == ("coordinator", None)
    assert "two-factor sign-in" in factories.text_of(outbox.only())


def test_inactive_new_user_is_not_sent_a_dead_link(app, client, signed_in_admin, org, outbox):
    form = _user_form(organisation=str(org["id"]))
    del form["active"]
    assert client.post("/admin/users/new", data=form).status_code == 302
    assert _user(app, "new.person@example.org").active is False
    assert outbox.messages() == []
    assert "Account created, inactive." in _text(client.get("/admin/users"))


@pytest.mark.parametrize("email", ["{existing}", "{upper}", "{capitalised}"])
def test_duplicate_email_is_refused(app, client, signed_in_admin, member, org, outbox, email):
    address = email.format(existing=member.email, upper=member.email.upper(), capitalised=member.email.capitalize())
    response = client.post("/admin/users/new", data=_user_form(email=address, organisation=str(org["id"])))
    assert response.status_code == 200
    assert f"There is already an account for {member.email}." in _text(response)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(User).where(User.email == member.email)) == 1
    assert outbox.messages() == []


@pytest.mark.parametrize(
    "email", ["not-an-email", "a@b@c", "x@example.org\r\nBcc: evil@example.org", "x@example.org\nBcc: evil@x.org"]
)
def test_bad_email_is_refused(app, client, signed_in_admin, org, outbox, email):
    response = client.post("/admin/users/new", data=_user_form(email=email, organisation=str(org["id"])))
    assert response.status_code == 200
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 1  # the admin
    assert outbox.messages() == []


@pytest.mark.parametrize("value", ["abc", "²", "\u0661", "1e3", "-1", "1.0", " 1", "99999999999999999999999999", "0"])
def test_odd_organisation_ids_do_not_break_the_form(app, client, signed_in_admin, org, value):
    member = client.post("/admin/users/new", data=_user_form(organisation=value))
    assert member.status_code == 200
    assert "A member user represents an organisation: choose one." in _text(member)
    coordinator = client.post("/admin/users/new", data=_user_form(role="coordinator", organisation=value))
    assert coordinator.status_code == 302
    assert _user(app, "new.person@example.org").organisation_id is None
    edit = client.post(
        f"/admin/users/{signed_in_admin.id}",
        data={"name": "Admin", "role": "admin", "organisation": value, "active": "y"},
    )
    assert edit.status_code == 302


@pytest.mark.parametrize("change", [{"role": "coordinator"}, {"role": "member"}, {"active": None}])
def test_last_active_admin_cannot_be_demoted_or_deactivated(app, client, signed_in_admin, org, change):
    form = {"name": "The Admin", "role": "admin", "organisation": str(org["id"]), "active": "y"}
    form.update(change)
    form = {k: v for k, v in form.items() if v is not None}
    response = client.post(f"/admin/users/{signed_in_admin.id}", data=form)
    assert response.status_code == 200
    assert "This is the last active admin: make another admin first." in _text(response)
    saved = _user(app, signed_in_admin.email)
    assert (saved.role, saved.active, saved.organisation_id) == ("admin", True, None)
    assert _signed_in(client)


def test_an_admin_can_step_down_when_another_is_active(app, client, signed_in_admin, make_account):
    make_account("admin")
    form = {"name": "The Admin", "role": "coordinator", "organisation": "", "active": "y"}
    assert client.post(f"/admin/users/{signed_in_admin.id}", data=form).status_code == 302
    assert _user(app, signed_in_admin.email).role == "coordinator"
    # A changed role ends the session; the admin pages are out of reach either way.
    response = client.get("/admin/users")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_an_inactive_admin_does_not_count_but_can_still_be_edited(app, client, signed_in_admin, make_account):
    dormant = make_account("admin")
    with app.app_context():
        db.session.execute(sa.update(User).where(User.id == dormant.id).values(active=False))
        db.session.commit()
    demote_self = {"name": "The Admin", "role": "coordinator", "organisation": "", "active": "y"}
    assert client.post(f"/admin/users/{signed_in_admin.id}", data=demote_self).status_code == 200
    assert _user(app, signed_in_admin.email).role == "admin"
    rename = {"name": "Dormant Admin", "role": "admin", "organisation": ""}  # stays inactive
    assert client.post(f"/admin/users/{dormant.id}", data=rename).status_code == 302
    assert _user(app, dormant.email).name == "Dormant Admin"


def test_deactivating_a_user_signs_them_out(app, client, signed_in_admin, member):
    theirs = app.test_client()
    theirs.post("/login", data={"email": member.email, "password": factories.PASSWORD})
    assert _signed_in(theirs)
    form = {"name": "Gone Member", "role": "member", "organisation": str(member.organisation_id)}
    assert client.post(f"/admin/users/{member.id}", data=form).status_code == 302
    assert not _signed_in(theirs)
    assert theirs.post("/login", data={"email": member.email, "password": factories.PASSWORD}).status_code == 401
    [event] = _events(app, "user.update")
    assert event.details["before"]["active"] is True
    # Reactivated, the old session stays dead.
    client.post(f"/admin/users/{member.id}", data={**form, "active": "y"})
    assert not _signed_in(theirs)
    assert theirs.post("/login", data={"email": member.email, "password": factories.PASSWORD}).status_code == 302


def test_demoting_a_coordinator_removes_their_second_factor(app, client, signed_in_admin, coordinator, org):
    form = {"name": "Now A Member", "role": "member", "organisation": str(org["id"]), "active": "y"}
    assert client.post(f"/admin/users/{coordinator.id}", data=form).status_code == 302
    saved = _user(app, coordinator.email)
    assert (saved.role, saved.organisation_id, saved.totp_secret) == ("member", org["id"], None)


def test_admin_resets_anothers_two_factor(app, client, signed_in_admin, coordinator):
    theirs = app.test_client()
    AuthActions(app, theirs).login(coordinator)
    assert _signed_in(theirs)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).where(RecoveryCode.user_id == coordinator.id)) == 10
    response = client.post(f"/admin/users/{coordinator.id}/reset-two-factor")
    assert response.headers["Location"] == f"/admin/users/{coordinator.id}"
    saved = _user(app, coordinator.email)
    assert (saved.totp_secret, saved.totp_enabled_at) == (None, None)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).where(RecoveryCode.user_id == coordinator.id)) == 0
    [event] = _events(app, "user.two_factor_reset")
    assert (event.actor_id, event.object_id) == (signed_in_admin.id, str(coordinator.id))
    assert not _signed_in(theirs)
    again = theirs.post("/login", data={"email": coordinator.email, "password": factories.PASSWORD})
    assert again.headers["Location"] == "/login/two-factor/setup"


def test_admin_cannot_reset_their_own_two_factor(app, client, signed_in_admin):
    client.post(f"/admin/users/{signed_in_admin.id}/reset-two-factor")
    page = _text(client.get(f"/admin/users/{signed_in_admin.id}"))
    assert "Reset your own second factor from another admin's account." in page
    assert _user(app, signed_in_admin.email).totp_secret == signed_in_admin.totp_secret
    assert _events(app, "user.two_factor_reset") == []


def test_resend_invitation(app, client, signed_in_admin, make_account, outbox):
    invited = make_account("member", password=None)
    assert client.post(f"/admin/users/{invited.id}/invite").status_code == 302
    assert outbox.only()["To"] == invited.email
    assert len(_events(app, "user.invite")) == 1


def test_unknown_user_is_404(client, signed_in_admin):
    assert client.get("/admin/users/999999").status_code == 404
    assert client.post("/admin/users/999999/reset-two-factor").status_code == 404


# --- lists ---------------------------------------------------------------------


def _rows(response) -> int:
    return _text(response).count("<tr>") - 1  # the header row


def test_users_list_filters_by_text_and_role(client, signed_in_admin, make_account):
    make_account("coordinator", email="jonas.lindqvist@example.org")
    make_account("member", email="lucia@opc.example.org")
    make_account("member", email="under_score@example.org")
    page = _text(client.get("/admin/users", query_string={"q": "LINDQVIST"}))
    assert "jonas.lindqvist@example.org" in page and "lucia@opc.example.org" not in page
    page = _text(client.get("/admin/users", query_string={"role": "member"}))
    assert "lucia@opc.example.org" in page and "jonas.lindqvist@example.org" not in page
    assert signed_in_admin.email not in page
    page = _text(client.get("/admin/users", query_string={"q": "opc", "role": "coordinator"}))
    assert "No users match." in page
    # LIKE wildcards are matched as themselves.
    page = _text(client.get("/admin/users", query_string={"q": "_"}))
    assert "under_score@example.org" in page and "lucia@opc.example.org" not in page
    assert "No users match." in _text(client.get("/admin/users", query_string={"q": "%"}))
    # An unknown role filters nothing out.
    assert "lucia@opc.example.org" in _text(client.get("/admin/users", query_string={"role": "pope"}))


def test_users_list_paginates(client, signed_in_admin, make_account):
    for _ in range(54):
        make_account("coordinator", password=None, two_factor=False)
    first = client.get("/admin/users")
    assert _rows(first) == 50
    assert "Page 1 of 2 · 55 in all" in _text(first)
    assert _rows(client.get("/admin/users", query_string={"page": 2})) == 5
    for odd in ("0", "-3", "abc", "999", "1.5", "99999999999999999999"):
        response = client.get("/admin/users", query_string={"page": odd})
        assert response.status_code == 200, odd


def test_organisations_list_filters_and_paginates(app, client, signed_in_admin):
    with app.app_context():
        factories.organisation("Médecins Pour la Paix", member=True)
        factories.organisation("Baltic Humanitarian Law Society", member=False)
        factories.organisation("100% Peace", member=False)
    page = _text(client.get("/admin/organisations", query_string={"q": "medecins"}))
    assert "Médecins Pour la Paix" in page and "Baltic" not in page
    page = _text(client.get("/admin/organisations", query_string={"member": "no"}))
    assert "Baltic Humanitarian Law Society" in page and "Médecins" not in page
    page = _text(client.get("/admin/organisations", query_string={"member": "yes"}))
    assert "Médecins Pour la Paix" in page and "Baltic" not in page
    page = _text(client.get("/admin/organisations", query_string={"q": "100%"}))
    assert "100% Peace" in page and "Baltic" not in page
    with app.app_context():
        for n in range(50):
            factories.organisation(f"Filler Organisation {n:02}")
    assert _rows(client.get("/admin/organisations")) == 50
    assert _rows(client.get("/admin/organisations", query_string={"page": 2})) == 3
    assert client.get("/admin/organisations", query_string={"page": "x"}).status_code == 200


# --- CSRF ----------------------------------------------------------------------


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def test_posts_without_a_csrf_token_are_refused(separate_app):
    app = separate_app(WTF_CSRF_ENABLED=True)
    with app.app_context():
        admin = factories.Account.of(factories.user("admin"))
        member = factories.Account.of(factories.user("member"))
    client = app.test_client()
    assert client.post("/login", data={"email": admin.email, "password": factories.PASSWORD}).status_code == 400
    token = _csrf(client.get("/login").get_data(as_text=True))
    data = {"email": admin.email, "password": factories.PASSWORD, "csrf_token": token}
    assert client.post("/login", data=data).headers["Location"] == "/login/two-factor"
    token = _csrf(client.get("/login/two-factor").get_data(as_text=True))
    code = pyotp.TOTP(admin.totp_secret).now()
    assert client.post("/login/two-factor", data={"code": code, "csrf_token": token}).status_code == 302

    refused = client.post("/admin/organisations/new", data=_org_form())
    assert refused.status_code == 400
    assert "The form expired or was sent from elsewhere." in _text(refused)
    forged = client.post("/admin/organisations/new", data={**_org_form(), "csrf_token": "forged." + token[7:]})
    assert forged.status_code == 400
    deactivate = {"name": "Member", "role": "member", "organisation": str(member.organisation_id)}
    assert client.post(f"/admin/users/{member.id}", data=deactivate).status_code == 400
    assert client.post(f"/admin/users/{member.id}/invite").status_code == 400
    assert client.post("/logout").status_code == 400
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Organisation)) == 1  # the member's
        assert db.session.get(User, member.id).active is True
    assert _signed_in(client)

    token = _csrf(client.get("/admin/organisations/new").get_data(as_text=True))
    accepted = client.post("/admin/organisations/new", data={**_org_form(), "csrf_token": token})
    assert accepted.status_code == 302
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Organisation)) == 2
