"""The demo's fictional directory: a Permanent Mission contact for every UN Member State.

Every name and address is invented (``*.example.org``).  A few states also have a
Geneva or a deputy contact (one message per contact), and two states have only a
suppressed contact, so the coverage check shows gaps.  Loaded through the CSV import;
contacts that exist are left as they are.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import click
import sqlalchemy as sa

from campaign.contacts import services
from campaign.contacts.countries import UN_MEMBER_STATES, country_name
from campaign.contacts.models import Contact, Suppression
from campaign.extensions import db


def _codes(text: str) -> frozenset[str]:
    return frozenset(text.split())


FRENCH = _codes("BE BF BI BJ CD CF CG CH CI CM DJ FR GA GN HT KM LU MC MG ML NE SN TD TG")
SPANISH = _codes("AR BO CL CO CR CU DO EC ES GQ GT HN MX NI PA PE PY SV UY VE")
ARABIC = _codes("AE BH DZ EG IQ JO KW LB LY MA MR OM QA SA SD SO SY TN YE")
RUSSIAN = _codes("BY KG KZ RU TJ")
P5 = _codes("CN FR GB RU US")
SECURITY_COUNCIL = P5 | _codes("DZ DK GR GY KR PA PK SI SL SO")
HUMAN_RIGHTS_COUNCIL = _codes("BJ BO CL CZ ET GM JP KE MV MX NL QA TH ZA ES")
GENEVA = _codes("CH FR JP KE MX SN")
DEPUTIES = _codes("BR US")
#: The only contact of these states is suppressed: coverage shows them as gaps.
SUPPRESSED = {"KI": (Suppression.BOUNCED, "Mailbox full for 30 days"), "SM": (Suppression.UNSUBSCRIBED, "")}

MISSION_NAMES = {
    "CD": "the Democratic Republic of the Congo", "FM": "the Federated States of Micronesia",
    "KP": "the Democratic People's Republic of Korea", "KR": "the Republic of Korea",
    "VC": "Saint Vincent and the Grenadines",
}  # fmt: skip
WITH_THE = _codes("AE BS CF CG DO GM KM MH MV NL PH RU SB GB US")

# language: (salutation, position, [(honorific, given, family), …]) — invented people
PROTOCOL: dict[str, tuple[str, str, list[tuple[str, str, str]]]] = {
    "en": ("Excellency,", "Permanent Representative", [
        ("H.E. Ms.", "Amara", "Whitfield"), ("H.E. Mr.", "Daniel", "Okonkwo-Hale"), ("H.E. Ms.", "Grace", "Lindqvist"),
        ("H.E. Mr.", "Kwame", "Ashby"), ("H.E. Ms.", "Leila", "Fairbanks"), ("H.E. Mr.", "Thomas", "Mbeki-Rowe"),
        ("H.E. Ms.", "Ruth", "Castellan"), ("H.E. Mr.", "Samuel", "Tavener")]),
    "fr": ("Excellence,", "Représentant permanent", [
        ("S.E. Mme", "Claire", "Dumoulin"), ("S.E. M.", "Mamadou", "Kerfalla"), ("S.E. Mme", "Aïssata", "Bellerive"),
        ("S.E. M.", "Étienne", "Laforge")]),
    "es": ("Excelencia,", "Representante Permanente", [
        ("S.E. Sra.", "Lucía", "Montalbán"), ("S.E. Sr.", "Andrés", "Quiroga"), ("S.E. Sra.", "Isabel", "Ferreyra"),
        ("S.E. Sr.", "Mateo", "Valdivieso")]),
    "ar": ("سعادة", "المندوب الدائم", [
        ("سعادة السيدة", "ليلى", "المنصوري"), ("سعادة السيد", "عمر", "الحدّاد"), ("سعادة السيدة", "هدى", "النقيب")]),
    "ru": ("Ваше Превосходительство,", "Постоянный представитель", [
        ("Г-жа", "Ирина", "Белозерова"), ("Г-н", "Алексей", "Звонарёв"), ("Г-жа", "Ольга", "Ладыженская")]),
    "zh": ("阁下：", "常驻代表", [("", "明远", "沈")]),  # noqa: RUF001 - the Chinese colon
}  # fmt: skip


def language_of(code: str) -> str:
    for language, states in (("fr", FRENCH), ("es", SPANISH), ("ar", ARABIC), ("ru", RUSSIAN)):
        if code in states:
            return language
    return "zh" if code == "CN" else "en"


def mission_name(code: str) -> str:
    name = MISSION_NAMES.get(code) or country_name(code)
    return f"the {name}" if code in WITH_THE else name


def _tags(code: str, *extra: str) -> str:
    tags = [*extra]
    tags += ["P5"] if code in P5 else []
    tags += ["Security Council"] if code in SECURITY_COUNCIL else []
    tags += ["Human Rights Council"] if code in HUMAN_RIGHTS_COUNCIL else []
    return ";".join(tags)


def directory() -> list[dict[str, Any]]:
    """The fictional contacts as CSV rows, in a stable order."""
    rows = []
    for n, code in enumerate(sorted(UN_MEMBER_STATES)):
        language = language_of(code)
        salutation, position, people = PROTOCOL[language]
        honorific, given, family = people[n % len(people)]
        base = {"country_code": code, "honorific": honorific, "first_name": given, "last_name": family,
                "salutation": salutation, "language": language}  # fmt: skip
        rows.append(base | {
            "organisation": f"Permanent Mission of {mission_name(code)} to the United Nations",
            "position": position, "email": f"pm.{code.lower()}@missions.example.org",
            "timezone": "America/New_York", "tags": _tags(code, "NY"),
        })  # fmt: skip
        if code in DEPUTIES:
            rows.append(base | {
                "organisation": f"Permanent Mission of {mission_name(code)} to the United Nations",
                "honorific": "", "first_name": "", "last_name": "", "position": "Deputy Permanent Representative",
                "email": f"deputy.{code.lower()}@missions.example.org", "timezone": "America/New_York",
                "tags": _tags(code, "NY"),
            })  # fmt: skip
        if code in GENEVA:
            rows.append(base | {
                "organisation": f"Permanent Mission of {mission_name(code)} to the United Nations Office at Geneva",
                "honorific": "", "first_name": "", "last_name": "", "position": position,
                "email": f"geneva.{code.lower()}@missions.example.org", "timezone": "Europe/Zurich",
                "tags": _tags(code, "Geneva"),
            })  # fmt: skip
    return rows


def _csv(rows: list[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()


def load_contacts(actor: Any = None) -> int:
    """Add the demo contacts that are missing; returns how many were added (and commits)."""
    rows = directory()
    emails = [row["email"] for row in rows]
    have = set(db.session.scalars(sa.select(Contact.email).where(Contact.email.in_(emails))))
    missing = [row for row in rows if row["email"] not in have]
    if missing:
        report = services.import_csv(_csv(missing), dry_run=False, accept_valid=False, actor=actor)
        if not report.imported:  # the demo data itself is wrong: say how
            raise click.ClickException(f"demo contacts refused: {report.error or report.rejected[:3]}")
        for code, (reason, note) in SUPPRESSED.items():
            email = f"pm.{code.lower()}@missions.example.org"
            if email not in have:
                services.suppress(services.get_by_email(email), reason, note, actor=actor)
        db.session.commit()
    click.echo(
        f"Contacts: {len(missing)} added, {len(have)} already there; "
        f"{len(services.uncovered_states())} UN Member States without a deliverable contact."
    )
    return len(missing)
