"""``flask users …``"""

from __future__ import annotations

import click
from flask.cli import AppGroup

from campaign.auth import services
from campaign.auth.models import Role
from campaign.extensions import db

users_cli = AppGroup("users", help="Manage user accounts.")


@users_cli.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--org", "org_slug", help="Slug of the organisation a member represents.")
@click.option("--name", default="", help="Display name (defaults to the email).")
@click.option("--password", help="Prompted for when not given.")
def create_user(email: str, role: str, org_slug: str | None, name: str, password: str | None) -> None:
    """Create a user with ROLE; a member needs --org."""
    organisation = None
    if org_slug:
        organisation = services.get_organisation_by_slug(org_slug)
        if organisation is None:
            raise click.ClickException(f"no organisation with slug {org_slug!r}")
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = services.create_user(email, name or email, role, organisation, password=password)
    except services.AccountError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from None
    db.session.commit()
    click.echo(f"Created {user.role} {user.email}" + (f" for {organisation.name}" if organisation else ""))
    if user.needs_two_factor:
        click.echo("Two-factor sign-in is set up at the first sign-in.")
