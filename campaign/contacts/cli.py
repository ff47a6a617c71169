"""``flask contacts import CSV [--dry-run] [--accept-valid]`` and ``flask contacts export``."""

from __future__ import annotations

from pathlib import Path

import click
from flask.cli import AppGroup

from campaign.contacts import services
from campaign.contacts.csvio import MAX_BYTES
from campaign.extensions import db

contacts_cli = AppGroup("contacts", help="Mission contacts as CSV.")


def print_report(report: services.ImportReport) -> None:
    """The counts, warnings and every rejected row as ``line N: email: reason``."""
    if report.error:
        click.echo(f"Refused: {report.error}", err=True)
        return
    click.echo(
        f"{report.total} rows: {report.valid} valid, {report.new} new, {report.updated} updated, "
        f"{report.unchanged} unchanged, {len(report.rejected)} rejected"
    )
    for warning in report.warnings:
        click.echo(f"Warning: {warning}")
    for row in report.rejected:
        click.echo(f"line {row.line}: {row.email or '(no email)'}: {row.reason}")
    if report.dry_run:
        click.echo("Dry run: nothing was imported.")
    elif report.imported:
        click.echo(f"Imported: {report.new} new, {report.updated} updated.")
    else:
        click.echo("Nothing was imported: fix the rejected rows, or import the valid rows with --accept-valid.")


@contacts_cli.command("import")
@click.argument("csv_file", metavar="CSV", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check the file and report; import nothing.")
@click.option("--accept-valid", is_flag=True, help="Import the valid rows even when some are rejected.")
def import_contacts(csv_file: Path, dry_run: bool, accept_valid: bool) -> None:
    """Import contacts from CSV: new emails are added, known ones updated.

    A file with a rejected row imports nothing unless --accept-valid is given.  The
    exit status is 1 when the file is refused or rows were rejected without --accept-valid.
    """
    if csv_file.stat().st_size > MAX_BYTES:
        raise click.ClickException(f"{csv_file} is larger than {MAX_BYTES // 1024 // 1024} MB; split it into parts.")
    report = services.import_csv(csv_file.read_bytes(), dry_run=dry_run, accept_valid=accept_valid)
    db.session.commit()
    print_report(report)
    if report.error or (report.rejected and not accept_valid):
        raise click.exceptions.Exit(1)


@contacts_cli.command("export")
@click.option("--output", type=click.Path(dir_okay=False, writable=True, path_type=Path), help="Default: stdout.")
def export_contacts(output: Path | None) -> None:
    """Write every contact as CSV (the import's columns, then the suppression state)."""
    lines = services.export_csv(services.filter_query(services.ContactFilter()))
    if output is None:
        for chunk in lines:
            click.echo(chunk, nl=False)
        return
    with output.open("w", encoding="utf-8", newline="") as file:
        file.writelines(lines)
    click.echo(f"Wrote {output}", err=True)
