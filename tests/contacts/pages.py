"""What the contact page tests share: contacts made through the services, reading pages, CSV files."""

from __future__ import annotations

import html
import io
import re

import sqlalchemy as sa

from campaign.contacts import services
from campaign.contacts.models import Contact
from campaign.contacts.services import ContactData
from campaign.extensions import db

HEADER = "country_code,country,organisation,honorific,first_name,last_name,position,salutation,email,language,tags"


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def make_contact(app, email: str, country: str = "FR", **fields: object) -> int:
    with app.app_context():
        contact = services.create_contact(ContactData(country=country, email=email, **fields))
        db.session.commit()
        return contact.id


def contact_row(app, email: str) -> Contact | None:
    with app.app_context():
        found = services.get_by_email(email)
        if found is not None:
            found.tags, found.events  # noqa: B018  (load them before the session closes)
        db.session.expunge_all()
        return found


def history(app, email: str) -> list[str]:
    """The contact's history summaries, newest first."""
    found = contact_row(app, email)
    return [event.summary for event in found.events] if found else []


def count_contacts(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(Contact))


def emails_listed(page: str) -> list[str]:
    return re.findall(r"<td>([^<@\s]+@[^<\s]+)</td>", page)


def contact_form(**fields: str) -> dict[str, str]:
    form = {
        "email": "amina.diallo@mission.example.org",
        "country": "SN",
        "organisation": "Permanent Mission of Senegal to the United Nations",
        "honorific": "H.E. Ms.",
        "given_name": "Amina",
        "family_name": "Diallo",
        "position": "Permanent Representative",
        "salutation": "Your Excellency,",
        "language": "fr",
        "timezone": "",
        "tags": "P5 watch; Africa Group, Geneva",
        "notes": "Met at the 2025 retreat.",
    }
    form.update(fields)
    return form


def upload(client, content: bytes, *, dry_run: bool = False, accept_valid: bool = False):
    data: dict[str, object] = {"file": (io.BytesIO(content), "contacts.csv")}
    if dry_run:
        data["dry_run"] = "y"
    if accept_valid:
        data["accept_valid"] = "y"
    return client.post("/admin/contacts/import", data=data, content_type="multipart/form-data")


def fill_directory(app) -> None:
    """Four contacts: Ghana (Africa Group), France and China (P5; fr, zh), Brazil (bounced, with % and _)."""
    make_contact(app, "ghana@mission.example.org", "GH", organisation="Mission of Ghana", tags=["Africa Group"])
    make_contact(app, "france@mission.example.org", "FR", language="fr", tags=["P5"], given_name="Claire")
    make_contact(app, "china@mission.example.org", "CN", language="zh", tags=["P5"])
    suppressed = make_contact(app, "percent_100%@mission.example.org", "BR", organisation="100% Mission")
    with app.app_context():
        services.suppress(services.get_contact(suppressed), "bounced", "Mailbox full")
        db.session.commit()


GOOD_ROWS = [
    "FR,France,Permanent Mission of France,H.E. Mr.,Jean,Dupont,Permanent Representative,Excellency,"
    "jean.dupont@mission.example.org,fr,P5;Security Council",
    "GH,Ghana,Permanent Mission of Ghana,H.E. Ms.,Ama,Mensah,Ambassador,Excellency,ama.mensah@mission.example.org,en,",
]
BAD_ROWS = [
    "XX,Nowhere,Mission,,A,B,,,someone@mission.example.org,en,",  # line 4: country
    "CN,China,Mission,,C,D,,,not-an-email,zh,P5",  # line 5: email
    "RU,Russia,Mission,,E,F,,,ru@mission.example.org,de,P5",  # line 6: language
    'DE,Germany,"=HYPERLINK(""http://evil.example"")",,G,H,,,de@mission.example.org,en,',  # line 7: formula
    "FR,France,Mission,,I,J,,,JEAN.DUPONT@mission.example.org,fr,",  # line 8: repeats line 2
]


def csv_bytes(*rows: str, header: str = HEADER) -> bytes:
    return ("\r\n".join([header, *rows]) + "\r\n").encode()
