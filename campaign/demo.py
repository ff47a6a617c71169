"""``flask demo load``: a small fictional coalition to explore the product with.

Safe to run again: what exists is left as it is.  Each domain adds its part here;
letters come from the ``letters/`` folder, through ``flask letters import``'s code.
"""

from __future__ import annotations

import click
import pyotp
from flask import current_app
from flask.cli import AppGroup

from campaign.admin.services import SettingsData, get_settings, update_settings
from campaign.alerts.demo import load_alerts, load_subscribers
from campaign.auth import services, twofactor
from campaign.auth.models import Organisation, User
from campaign.contacts.demo import load_contacts
from campaign.extensions import db
from campaign.mailings.demo import load_mailings
from campaign.signatures.demo import load_signatures

demo_cli = AppGroup("demo", help="Demonstration data.")

DEMO_PASSWORD = "demarche-demo-2026"  # noqa: S105 - printed for the demo

SETTINGS = SettingsData(
    name="Civilian Shield Coalition",
    letterhead="Civilian Shield Coalition\nRue des Pâquis 12, 1201 Geneva, Switzerland\ncivilian-shield.example.org",
    mail_from_name="Civilian Shield Coalition",
    mail_from_address="secretariat@civilian-shield.example.org",
    reply_to="secretariat@civilian-shield.example.org",
    postal_address="Civilian Shield Coalition, Rue des Pâquis 12, 1201 Geneva, Switzerland",
    privacy_notice=(
        "We use your email address only to send the alerts you chose. You can change your choices, "
        "export your data or unsubscribe at any time from the link in every alert."
    ),
)

# (name, country, website, member)
ORGANISATIONS = [
    ("Observatorio de Protección Civil", "MX", "https://opc.example.org", True),
    ("Sahel Human Security Network", "SN", "https://shsn.example.org", True),
    ("Nordic Atrocity Prevention Forum", "NO", "https://napf.example.org", True),
    ("Centre Africain pour la Paix et la Justice", "CM", "https://capj.example.org", True),
    ("Asia-Pacific Protection Initiative", "PH", "https://appi.example.org", True),
    ("Levant Civil Rights Monitor", "JO", "https://lcrm.example.org", True),
    ("Andean Peace Institute", "PE", "https://api-andes.example.org", False),
    ("Baltic Humanitarian Law Society", "LT", "https://bhls.example.org", False),
]

# (email, name, role, organisation slug or None)
USERS = [
    ("admin@civilian-shield.example.org", "Amina Diallo", "admin", None),
    ("coordinator@civilian-shield.example.org", "Jonas Lindqvist", "coordinator", None),
    ("reviewer@civilian-shield.example.org", "Mei Tanaka", "coordinator", None),
    ("member@opc.example.org", "Lucía Hernández", "member", "observatorio-de-proteccion-civil"),
]


def load_accounts() -> list[tuple[User, str | None]]:
    if db.session.get(type(get_settings()), 1) is None:
        update_settings(SETTINGS)
    for name, country, website, member in ORGANISATIONS:
        if (
            db.session.scalar(
                db.select(Organisation).where(Organisation.name_key == services.organisation_name_key(name))
            )
            is None
        ):
            services.create_organisation(services.OrganisationData(name, country, website, member))
    accounts = []
    for email, name, role, org_slug in USERS:
        user = services.get_user_by_email(email)
        if user is None:
            org = services.get_organisation_by_slug(org_slug) if org_slug else None
            user = services.create_user(email, name, role, org, password=DEMO_PASSWORD)
        if user.needs_two_factor and not user.two_factor_enabled:
            twofactor.enable(user, twofactor.new_secret())
        accounts.append((user, user.totp_secret))
    return accounts


def load_letters(author: User | None) -> None:
    """Import ``letters/`` (the open letter, its meeting and translations) unless it is there.

    A letter or translation that exists is left as it is, whatever a coordinator did to it.
    """
    from campaign.letters.cli import default_folder, import_and_commit, report

    folder = default_folder()
    if not folder.is_dir():
        return
    click.echo(f"Letters from {folder}:")
    outcomes = import_and_commit(folder, author=author, create_only=True)
    click.echo(f"  {report(outcomes)}")
    for outcome in outcomes:
        if outcome.ok and outcome.action == "created" and not outcome.path.stem.count("."):
            click.echo(f"  read it at /letters/{outcome.path.stem}")


@demo_cli.command("load")
def load() -> None:
    """Load the demo coalition (again, harmlessly, if it is there)."""
    if current_app.config["APP_ENV"] == "production":
        raise click.ClickException("demo accounts have a published password: not loaded with APP_ENV=production")
    accounts = load_accounts()
    db.session.commit()
    # Before the letters and mailings, so that their automatic alerts have subscribers to reach.
    load_subscribers()
    load_letters(next((user for user, _ in accounts if user.role == "coordinator"), None))
    coordinator = next((user for user, _ in accounts if user.role == "coordinator"), None)
    load_contacts(coordinator)
    load_signatures(next((user for user, _ in accounts if user.role == "member"), None), coordinator)
    reviewer = next((user for user, _ in accounts if user.role == "coordinator" and user is not coordinator), None)
    load_mailings(coordinator, reviewer)
    load_alerts(coordinator)
    click.echo("Demo data loaded. Sign in at /login with these accounts:")
    click.echo(f"  password for all: {DEMO_PASSWORD}")
    for user, secret in accounts:
        line = f"  {user.role:<12} {user.email}"
        if secret:
            line += f"  (two-factor secret {secret}; current code {pyotp.TOTP(secret).now()})"
        click.echo(line)
    click.echo("Admins and coordinators sign in with a code from an authenticator app holding the secret,")
    click.echo("or run: .venv/bin/python -c \"import pyotp; print(pyotp.TOTP('SECRET').now())\"")
