"""``flask mailings``: send a mailing and follow it from a terminal."""

from __future__ import annotations

import time

import click
from flask.cli import with_appcontext

from campaign import queue
from campaign.extensions import db
from campaign.mailings import sending, services
from campaign.mailings.models import Mailing, MailingStatus

mailings_cli = click.Group("mailings", help="Send mailings and show their progress.")


def _mailing(id: int) -> Mailing:
    mailing = services.get_mailing(id)
    if mailing is None:
        raise click.ClickException(f"no mailing {id}")
    return mailing


def _status_line(mailing: Mailing) -> str:
    progress = sending.progress(mailing.id)
    if not progress.total:
        return f"mailing {mailing.id} {mailing.status}: no deliveries yet"
    counts = ", ".join(f"{state} {n}" for state, n in progress.counts.items() if n)
    return f"mailing {mailing.id} {mailing.status}: {progress.done}/{progress.total} ({progress.percent} %) {counts}"


@mailings_cli.command("status")
@click.argument("id", type=int)
@with_appcontext
def status_command(id: int) -> None:
    """Show a mailing's deliveries per state."""
    mailing = _mailing(id)
    click.echo(_status_line(mailing))
    for delivery in services.uncertain_deliveries(mailing):
        click.echo(f"  uncertain: delivery {delivery.id} to {delivery.email}: {delivery.reason}")


@mailings_cli.command("send")
@click.argument("id", type=int)
@click.option("--wait/--no-wait", default=True, show_default=True, help="Send from this process and follow it.")
@with_appcontext
def send_command(id: int, wait: bool) -> None:
    """Send an approved mailing now (a scheduled one keeps its time), then help send it.

    This process claims chunks like any worker, so it is safe beside running workers.
    """
    mailing = _mailing(id)
    if mailing.status == MailingStatus.APPROVED:
        try:
            row = services.request_send(mailing, {})
        except services.MailingError as exc:
            raise click.ClickException(str(exc)) from exc
        db.session.commit()
        if not wait:
            queue.dispatch(row)
    elif mailing.status not in (MailingStatus.SCHEDULED, MailingStatus.SENDING):
        raise click.ClickException(f"mailing {id} is {mailing.status}: approve it first, or it is done")
    if not wait:
        click.echo(_status_line(mailing))
        return
    shown = ""
    while True:
        sending.expire_leases()
        handled = sending.send_chunk(id)
        db.session.expire_all()
        mailing = _mailing(id)
        line = _status_line(mailing)
        if line != shown:
            click.echo(line)
            shown = line
        if mailing.status in (MailingStatus.FINISHED, MailingStatus.CANCELLED):
            return
        if not handled:
            time.sleep(1)  # deliveries due later, or in other workers' hands
