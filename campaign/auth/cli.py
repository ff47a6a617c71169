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
    # Only a member is linked to the organisation; staff ignore --org.
    click.echo(f"Created {user.role} {user.email}" + (f" for {user.organisation.name}" if user.organisation else ""))
    if user.needs_two_factor:
        click.echo("Two-factor sign-in is set up at the first sign-in.")


tokens_cli = AppGroup("tokens", help="Manage API tokens.")


@tokens_cli.command("create")
@click.argument("email")
@click.option("--name", default="Command line", help="A name to tell the token apart.")
def create_token(email: str, name: str) -> None:
    """Create an API token for EMAIL; the token is printed alone on the last line."""
    from campaign.auth import tokens

    user = services.get_user_by_email(email)
    if user is None or not user.active:
        raise click.ClickException(f"no active user {email}")
    row, raw = tokens.create_token(user, name)
    db.session.commit()
    click.echo(f"Token {row.name!r} for {user.email} ({user.role}); it is shown only once:")
    click.echo(raw)
