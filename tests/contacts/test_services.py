"""The contacts rules: validation, changes and their history, tags in bulk, search, coverage, audiences."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from campaign.admin.models import CoalitionSettings
from campaign.audit import AuditEvent
from campaign.contacts import services
from campaign.contacts.countries import UN_MEMBER_STATES
from campaign.contacts.models import Contact, ContactEvent, ContactTag, Suppression
from campaign.contacts.services import ContactData, ContactError, ContactFilter
from campaign.extensions import db


def make(email: str = "pm@missions.example.org", country: str = "FR", **kwargs: object) -> Contact:
    contact = services.create_contact(ContactData(country=country, email=email, **kwargs))
    db.session.flush()
    return contact


def emails(query: sa.Select) -> list[str]:
    return [contact.email for contact in db.session.scalars(query)]


def audit_actions() -> list[str]:
    return list(db.session.scalars(sa.select(AuditEvent.action).order_by(AuditEvent.id)))


# --- normalising and validating -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(" Jean.Dupont@Example.ORG ", "jean.dupont@example.org"), ("A@B.example", "a@b.example"), ("", "")],
)
def test_normalise_email(raw, expected):
    assert services.normalise_email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (["  Security   Council ", "P5", "p5", "", "NY"], ["NY", "P5", "Security Council"]),
        (["b", "A", "a", "B"], ["A", "b"]),
        (["line\nbreak", "tab\there"], ["line break", "tab here"]),
        ([], []),
    ],
)
def test_normalise_tags(raw, expected):
    assert services.normalise_tags(raw) == expected


@pytest.mark.parametrize("tag", ["x" * 65, "a;b", "nul\x00", "bell\x07"])
def test_tags_that_cannot_be_kept_are_refused(tag):
    with pytest.raises(ContactError):
        services.normalise_tags([tag])


def test_validate_normalises(ctx):
    data = services.validate(
        ContactData(country=" fr ", email=" Jean@Example.org", language="FR", given_name="  Jean ", tags=["a", "A"])
    )
    assert (data.country, data.email, data.language, data.given_name, data.tags) == (
        "FR", "jean@example.org", "fr", "Jean", ["a"],
    )  # fmt: skip
    assert data.timezone == "America/New_York"  # the settings' default
    assert services.validate(ContactData(country="FR", email="a@example.org", language="")).language == "en"


def test_the_default_timezone_is_the_setting(ctx):
    db.session.add(CoalitionSettings(id=1, default_timezone="Europe/Zurich"))
    db.session.flush()
    from flask import g

    g.pop("coalition_settings", None)
    assert services.validate(ContactData(country="CH", email="a@example.org")).timezone == "Europe/Zurich"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"email": ""}, "Email is missing"),
        ({"email": "no-at-sign.example.org"}, "not valid"),
        ({"email": "two words@example.org"}, "not valid"),
        ({"email": "jö@example.org"}, "not valid"),
        ({"email": "x" * 250 + "@example.org"}, "not valid"),
        ({"country": "XX"}, "ISO 3166"),
        ({"country": "FRA"}, "ISO 3166"),
        ({"country": ""}, "Country is missing"),
        ({"language": "de"}, "Language"),
        ({"timezone": "Mars/Olympus_Mons"}, "IANA"),
        ({"given_name": "Jean\r\nBcc: x@example.org"}, "one line"),
        ({"salutation": "Excellency,\n"}, "one line"),
        ({"notes": "two\nlines"}, "one line"),
        ({"organisation": "nul\x00"}, "one line"),
        ({"position": "vertical\x0btab"}, "one line"),
        ({"family_name": "line\u2028separator"}, "one line"),
        ({"organisation": "next\x85line"}, "one line"),
        ({"given_name": "escape\x1b[31m"}, "one line"),
        ({"honorific": "H" * 81}, "longer than 80"),
        ({"organisation": "O" * 301}, "longer than 300"),
    ],
)
def test_validate_refuses(ctx, changes, message):
    data = ContactData(country="FR", email="pm@missions.example.org")
    for name, value in changes.items():
        setattr(data, name, value)
    with pytest.raises(ContactError, match=message):
        services.validate(data)


# --- changes and history ----------------------------------------------------------------------


def test_create_records_history_and_audit(ctx):
    contact = make(tags=["P5", "NY"], given_name="Claire")
    assert contact.tags == ["NY", "P5"]
    assert [event.kind for event in contact.events] == ["created"]
    assert audit_actions() == ["contacts.create"]
    assert services.get_by_email("PM@Missions.Example.org") is contact
    assert services.get_contact(contact.id) is contact


def test_an_email_is_used_once_whatever_its_case(ctx):
    make()
    with pytest.raises(services.DuplicateEmailError):
        make(email="PM@missions.example.org")


def test_update_records_the_changed_fields(ctx):
    contact = make(tags=["NY"], family_name="Dupont")
    data = ContactData.of(contact)
    data.family_name, data.tags = "Durand", ["NY", "P5"]
    services.update_contact(contact, data)
    event = contact.events[0]
    assert event.kind == "updated"
    assert event.details["changes"] == {"family_name": ["Dupont", "Durand"], "tags": [["NY"], ["NY", "P5"]]}
    assert contact.tags == ["NY", "P5"]
    assert audit_actions()[-1] == "contacts.update"


def test_an_update_without_changes_records_nothing(ctx):
    contact = make()
    services.update_contact(contact, ContactData.of(contact))
    assert len(contact.events) == 1


def test_update_refuses_another_contacts_email(ctx):
    make(email="a@example.org")
    contact = make(email="b@example.org")
    data = ContactData.of(contact)
    data.email = "A@example.org"
    with pytest.raises(services.DuplicateEmailError):
        services.update_contact(contact, data)


def test_delete_takes_tags_and_history_and_is_audited(ctx):
    contact = make(tags=["NY"])
    services.delete_contact(contact)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ContactTag)) == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ContactEvent)) == 0
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "contacts.delete"))
    assert event.details["email"] == "pm@missions.example.org"


def test_suppress_unsuppress_and_verify(ctx):
    contact = make()
    services.suppress(contact, "bounced", "Mailbox\nfull")
    assert (contact.suppression, contact.suppression_reason, contact.deliverable) == ("bounced", "Mailbox full", False)
    assert contact.needs_verification and contact.suppressed_at is not None
    services.mark_verified(contact)
    assert not contact.needs_verification and contact.last_verified_at is not None
    services.unsuppress(contact)
    assert contact.deliverable and contact.suppressed_at is None
    services.suppress(contact, Suppression.UNSUBSCRIBED)
    assert not contact.needs_verification or contact.last_verified_at is not None
    assert [e.kind for e in contact.events] == ["suppressed", "unsuppressed", "verified", "suppressed", "created"]
    with pytest.raises(ContactError):
        services.suppress(contact, "forgotten")


# --- tags in bulk -------------------------------------------------------------------------------


def test_add_and_remove_tags_in_bulk(ctx):
    a, b = make(email="a@example.org", tags=["NY"]), make(email="b@example.org", tags=["P5"])
    assert services.add_tags([a.id, b.id, 999999], ["p5", "Geneva"]) == 2
    assert (a.tags, b.tags) == (["Geneva", "NY", "P5"], ["Geneva", "P5"])  # "p5" takes the known spelling
    assert services.add_tags([a.id, b.id], ["P5"]) == 0
    assert services.remove_tags([a.id, b.id], ["GENEVA", "ny"]) == 2
    assert (a.tags, b.tags) == (["P5"], ["P5"])
    assert [e.kind for e in a.events][:2] == ["untagged", "tagged"]
    assert services.tag_counts() == [("P5", 2)]


# --- search -------------------------------------------------------------------------------------


def test_filter_query(ctx):
    make("jean@example.org", "FR", given_name="Jean", family_name="Dupont", tags=["P5"], language="fr")
    make("ana@example.org", "MX", organisation="Misión 100%", language="es")
    bounced = make("old@example.org", "FR", position="Counsellor_2")
    services.suppress(bounced, "bounced")
    assert emails(services.filter_query(ContactFilter())) == ["jean@example.org", "old@example.org", "ana@example.org"]
    assert emails(services.filter_query(ContactFilter(q="jean dupont"))) == ["jean@example.org"]
    assert emails(services.filter_query(ContactFilter(q="100%"))) == ["ana@example.org"]
    assert emails(services.filter_query(ContactFilter(q="%"))) == ["ana@example.org"]  # LIKE-escaped
    assert emails(services.filter_query(ContactFilter(q="r_2"))) == ["old@example.org"]
    assert emails(services.filter_query(ContactFilter(q="_"))) == ["old@example.org"]
    assert emails(services.filter_query(ContactFilter(country="fr", tag="p5"))) == ["jean@example.org"]
    assert emails(services.filter_query(ContactFilter(language="es"))) == ["ana@example.org"]
    assert emails(services.filter_query(ContactFilter(suppression="suppressed"))) == ["old@example.org"]
    assert emails(services.filter_query(ContactFilter(suppression="bounced"))) == ["old@example.org"]
    assert len(emails(services.filter_query(ContactFilter(suppression="deliverable")))) == 2


# --- coverage and audiences -----------------------------------------------------------------------


def test_coverage_lists_every_member_state(ctx):
    make("a@example.org", "FR")
    services.suppress(make("b@example.org", "FR"), "bounced")
    services.suppress(make("c@example.org", "KI"), "unsubscribed")
    make("d@example.org", "PS")  # an observer state: not in the UN coverage
    rows = {row.code: row for row in services.coverage()}
    assert set(rows) == UN_MEMBER_STATES and len(rows) == 193
    assert (rows["FR"].deliverable, rows["FR"].suppressed) == (1, 1)
    assert (rows["KI"].deliverable, rows["KI"].suppressed) == (0, 1)
    uncovered = services.uncovered_states()
    assert "FR" not in uncovered and "KI" in uncovered and len(uncovered) == 192


def test_audiences(ctx):
    make("fr@example.org", "FR", tags=["P5"], language="fr")
    make("gb@example.org", "GB", tags=["P5"])
    make("mx@example.org", "MX", tags=["Geneva"], language="es")
    audience = services.save_audience("P5 in French", ["p5"], [], ["fr", "EN"])
    assert (audience.tags, audience.languages) == (["P5"], ["en", "fr"])
    assert emails(services.audience_query(audience)) == ["fr@example.org", "gb@example.org"]
    services.save_audience("Geneva", ["Geneva", "P5"], ["mx", "US"], [], audience=audience)
    assert emails(services.audience_query(audience)) == ["mx@example.org"]
    rows = services.coverage_for(audience)
    assert [(row.code, row.deliverable) for row in rows] == [("MX", 1), ("US", 0)]
    assert len(services.coverage_for(ContactFilter(tag="P5"))) == 193
    assert [r.deliverable for r in services.coverage_for(ContactFilter(country="gb"))] == [1]
    assert services.list_audiences() == [audience]
    with pytest.raises(ContactError, match="already exists"):
        services.save_audience("GENEVA", [], [], [])
    with pytest.raises(ContactError, match="ISO"):
        services.save_audience("Bad", [], ["XX"], [])
    with pytest.raises(ContactError, match="Languages"):
        services.save_audience("Bad", [], [], ["de"])
    everyone = services.save_audience("Everyone", [], [], [])
    assert len(emails(services.audience_query(everyone))) == 3
    services.delete_audience(everyone)
    assert "audiences.delete" in audit_actions()


def test_mixed_case_tags_are_not_a_change(ctx):
    contact = make(tags=["p5", "Security Council"])
    services.update_contact(contact, ContactData.of(contact))
    assert [event.kind for event in contact.events] == ["created"]
