"""Every route checks its role: the whole URL map, for every role.

A route missing from ACCESS fails ``test_every_route_has_an_entry``: decide who
may reach it before it ships.
"""

from __future__ import annotations

import pytest

PUBLIC, SIGNED_IN, STAFF, ADMIN = "public", "signed-in", "staff", "admin"
MEMBERS = "members"  # representatives of member organisations only
ROLES = ("anonymous", "member", "coordinator", "admin")
ALLOWED = {
    PUBLIC: set(ROLES),
    SIGNED_IN: {"member", "coordinator", "admin"},
    STAFF: {"coordinator", "admin"},
    ADMIN: {"admin"},
    MEMBERS: {"member"},
}

ACCESS = {
    "static": PUBLIC,
    "main.index": PUBLIC,
    "main.logo": PUBLIC,
    "main.healthz": PUBLIC,
    "auth.login": PUBLIC,
    "auth.two_factor": PUBLIC,
    "auth.two_factor_setup": PUBLIC,
    "auth.logout": PUBLIC,
    "auth.forgot_password": PUBLIC,
    "auth.reset_password": PUBLIC,
    "auth.account": SIGNED_IN,
    "auth.recovery_codes": SIGNED_IN,
    "auth.regenerate_recovery_codes": SIGNED_IN,
    "admin.dashboard": STAFF,
    "admin.audit_log": STAFF,
    "admin.settings": ADMIN,
    "users.users": ADMIN,
    "users.new_user": ADMIN,
    "users.edit_user": ADMIN,
    "users.invite_user": ADMIN,
    "users.reset_two_factor": ADMIN,
    "users.organisations": ADMIN,
    "users.new_organisation": ADMIN,
    "users.edit_organisation": ADMIN,
    "mailings.outbox": ADMIN,
    "mailings.outbox_message": ADMIN,
    "mailings.outbox_html": ADMIN,
    "mailings.mailings": STAFF,
    "mailings.new_mailing": STAFF,
    "mailings.edit_mailing": STAFF,
    "mailings.mailing": STAFF,
    "mailings.progress": STAFF,
    "mailings.document": STAFF,
    "mailings.check": STAFF,
    "mailings.preview": STAFF,
    "mailings.preview_html": STAFF,
    "mailings.test_send": STAFF,
    "mailings.approve": STAFF,
    "mailings.send": STAFF,
    "mailings.cancel": STAFF,
    "mailings.deliveries": STAFF,
    "mailings.delivery": STAFF,
    "mailings.report_page": STAFF,
    "mailings.report_csv": STAFF,
    "mailings.record": STAFF,
    "admin.jobs": STAFF,
    "auth.create_token": SIGNED_IN,
    "auth.revoke_token": SIGNED_IN,
    "users.revoke_user_token": ADMIN,
    "api_docs": PUBLIC,
    "api-docs.openapi_json": PUBLIC,
    "public.letters": PUBLIC,
    "public.letter": PUBLIC,
    "public.letter_pdf": PUBLIC,
    "public.feed": PUBLIC,
    "public.meeting_ics": PUBLIC,
    "letters.letters": STAFF,
    "letters.new_letter": STAFF,
    "letters.edit_letter": STAFF,
    "letters.preview": STAFF,
    "letters.letter": STAFF,
    "letters.transition": STAFF,
    "letters.publish_changes": STAFF,
    "letters.revisions": STAFF,
    "letters.diff": STAFF,
    "letters.translation": STAFF,
    "letters.translation_status": STAFF,
    "meetings.meetings": STAFF,
    "meetings.new_meeting": STAFF,
    "meetings.edit_meeting": STAFF,
    "contacts.contacts": STAFF,
    "contacts.export": STAFF,
    "contacts.bulk_tags": STAFF,
    "contacts.new_contact": STAFF,
    "contacts.contact": STAFF,
    "contacts.edit_contact": STAFF,
    "contacts.suppress": STAFF,
    "contacts.unsuppress": STAFF,
    "contacts.verify": STAFF,
    "contacts.delete_contact": STAFF,
    "contacts.import_contacts": STAFF,
    "contacts.import_template": STAFF,
    "contacts.coverage": STAFF,
    "contacts.audiences": STAFF,
    "contacts.new_audience": STAFF,
    "contacts.edit_audience": STAFF,
    "contacts.delete_audience": STAFF,
    # The JSON API: bearer tokens, never the session cookie.
    "auth_api.me": SIGNED_IN,
    "auth_api.list_organisations": SIGNED_IN,
    "auth_api.get_organisation": SIGNED_IN,
    "auth_api.create_organisation": ADMIN,
    "auth_api.update_organisation": ADMIN,
    "auth_api.list_users": ADMIN,
    "auth_api.create_user": ADMIN,
    "auth_api.get_user": ADMIN,
    "auth_api.update_user": ADMIN,
    "letters_api.list_letters": SIGNED_IN,
    "letters_api.create_letter": STAFF,
    "letters_api.get_letter": SIGNED_IN,
    "letters_api.update_letter": STAFF,
    "letters_api.transition_letter": STAFF,
    "letters_api.list_revisions": STAFF,
    "letters_api.list_meetings": SIGNED_IN,
    "letters_api.create_meeting": STAFF,
    "letters_api.get_meeting": SIGNED_IN,
    "contacts_api.list_contacts": STAFF,
    "contacts_api.create_contact": STAFF,
    "contacts_api.get_contact": STAFF,
    "contacts_api.update_contact": STAFF,
    "contacts_api.delete_contact": STAFF,
    "contacts_api.import_contacts": STAFF,
    "signatures.open_letters": MEMBERS,
    "signatures.history": MEMBERS,
    "signatures.sign_letter": MEMBERS,
    "signatures.withdraw": MEMBERS,
    "signatures.reconfirm": MEMBERS,
    "signatures.invite": STAFF,
    "signatures_admin.letter_report": STAFF,
    "signatures_admin.export_csv": STAFF,
    "signatures_admin.export_json": STAFF,
    "signatures.sign": PUBLIC,
    "signatures.sign_sent": PUBLIC,
    "signatures.confirm": PUBLIC,
    "signatures.reconfirm_by_link": PUBLIC,
    "signatures.signer_data": PUBLIC,
    "signatures.signer_data_page": PUBLIC,
    "signatures.signer_data_export": PUBLIC,
    "signatures.signer_data_erase": PUBLIC,
    "signatures_admin.queue": STAFF,
    "signatures_admin.signature": STAFF,
    "signatures_admin.approve": STAFF,
    "signatures_admin.reject": STAFF,
    "signatures_admin.bulk": STAFF,
    "signatures_api.list_signatures": SIGNED_IN,
    "signatures_api.sign_letter": MEMBERS,
    "signatures_api.approve_signature": STAFF,
    "signatures_api.reject_signature": STAFF,
    "mailings_api.list_mailings": STAFF,
    "mailings_api.create_mailing": STAFF,
    "mailings_api.get_mailing": STAFF,
    "mailings_api.update_mailing": STAFF,
    "mailings_api.preview_mailing": STAFF,
    "mailings_api.check_mailing": STAFF,
    "mailings_api.approve_mailing": STAFF,
    "mailings_api.send_mailing": STAFF,
    "mailings_api.cancel_mailing": STAFF,
    "mailings_api.list_deliveries": STAFF,
    "mailings_api.get_delivery": STAFF,
    "alerts.subscribe": PUBLIC,
    "alerts.subscribe_sent": PUBLIC,
    "alerts.confirm": PUBLIC,  # the signed token is the key (tests/alerts/test_subscribe.py)
    "alerts.preferences": PUBLIC,
    "alerts.resume": PUBLIC,
    "alerts.export": PUBLIC,
    "alerts.delete": PUBLIC,
    "alerts.unsubscribe": PUBLIC,
    "alerts_admin.subscribers_list": STAFF,
    "alerts_admin.subscriber": STAFF,
    "alerts_admin.unsubscribe_subscriber": STAFF,
    "alerts_admin.delete_subscriber": STAFF,
    "alerts_admin.topics": STAFF,
    "alerts_admin.rename_topic": STAFF,
    "alerts_admin.retire_topic": STAFF,
    "alerts_admin.restore_topic": STAFF,
    "subscribers_api.list_subscribers": STAFF,
    "subscribers_api.get_subscriber": STAFF,
    "subscribers_api.delete_subscriber": STAFF,
    "alerts_admin.alerts": STAFF,
    "alerts_admin.new_alert": STAFF,
    "alerts_admin.edit_alert": STAFF,
    "alerts_admin.alert": STAFF,
    "alerts_admin.progress": STAFF,
    "alerts_admin.preview": STAFF,
    "alerts_admin.preview_html": STAFF,
    "alerts_admin.test_send": STAFF,
    "alerts_admin.send": STAFF,
    "alerts_admin.cancel": STAFF,
    "alerts_admin.export_deliveries": STAFF,
    "alerts_api.list_alerts": STAFF,
    "alerts_api.create_alert": STAFF,
    "alerts_api.get_alert": STAFF,
    "alerts_api.send_alert": STAFF,
    "alerts_api.cancel_alert": STAFF,
    "webhooks.sendgrid_events": PUBLIC,  # SendGrid's signature is checked instead (tests/mailings/test_webhook.py)
}
API_BLUEPRINTS = ("auth_api", "letters_api", "contacts_api")
API_BLUEPRINTS += ("signatures_api",)
API_BLUEPRINTS += ("mailings_api",)
API_BLUEPRINTS += ("alerts_api",)
API_BLUEPRINTS += ("subscribers_api",)


def test_every_route_has_an_entry(app):
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert endpoints - ACCESS.keys() == set(), "routes without an access entry"
    assert ACCESS.keys() - endpoints == set(), "entries for routes that no longer exist"


def _sample_values(accounts: dict) -> dict[str, object]:
    return {
        "filename": "css/app.css",
        "user_id": accounts["member"].id,
        "slug": accounts["member"].organisation_slug,
        "name": "20260101T000000-000000000000.eml",
        "token": "not-a-valid-token",
        "token_id": 999999,
        "id": accounts["member"].id,
        "meeting_id": 999999,
        "contact_id": 999999,
        "audience_id": 999999,
        "lang": "fr",
        "to": "review",
        "signature_id": 999999,
        "mailing_id": 999999,
        "delivery_id": 999999,
        "alert_id": 999999,
    }


def _is_api(endpoint: str) -> bool:
    return endpoint.split(".")[0] in API_BLUEPRINTS


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", sorted(e for e in ACCESS if not _is_api(e)))
def test_route_checks_role(app, client, auth, make_account, endpoint, role):
    accounts = {r: make_account(r) for r in ("member", "coordinator", "admin")}
    if role != "anonymous":
        auth.login(accounts[role])
    values = _sample_values(accounts)
    for rule in app.url_map.iter_rules(endpoint):
        url = rule.build({arg: values[arg] for arg in rule.arguments}, append_unknown=False)[1]
        method = "GET" if "GET" in rule.methods else "POST"
        response = client.open(url, method=method)
        response.close()
        where = f"{method} {url} as {role}"
        assert response.status_code < 500, where
        login_redirect = response.status_code == 302 and response.headers["Location"].startswith("/login")
        if ACCESS[endpoint] == PUBLIC:
            assert response.status_code != 403, where
        elif role in ALLOWED[ACCESS[endpoint]]:
            assert response.status_code != 403 and not login_redirect, where
        elif role == "anonymous":
            assert login_redirect, where
        else:
            assert response.status_code == 403, where


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", sorted(e for e in ACCESS if _is_api(e)))
def test_api_route_checks_role(app, client, auth, make_account, endpoint, role):
    from campaign.auth import tokens
    from campaign.auth.models import User
    from campaign.extensions import db

    accounts = {r: make_account(r) for r in ("member", "coordinator", "admin")}
    headers = {}
    if role != "anonymous":
        auth.login(accounts[role])  # a session cookie too: the API must ignore it
        with app.app_context():
            _, raw = tokens.create_token(db.session.get(User, accounts[role].id), "matrix")
            db.session.commit()
        headers = {"Authorization": f"Bearer {raw}"}
    values = _sample_values(accounts)
    for rule in app.url_map.iter_rules(endpoint):
        url = rule.build({arg: values[arg] for arg in rule.arguments}, append_unknown=False)[1]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            where = f"{method} {url} as {role}"
            response = client.open(url, method=method, headers=headers, json={} if method != "GET" else None)
            assert response.status_code < 500, where
            if role in ALLOWED[ACCESS[endpoint]] and role != "anonymous":
                assert response.status_code not in (401, 403), where
            elif role == "anonymous":
                assert response.status_code == 401, where
                assert client.open(url, method=method).status_code == 401, where
            else:
                assert response.status_code == 403, where
