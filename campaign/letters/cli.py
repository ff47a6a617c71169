"""``flask letters import PATH`` and ``flask letters export SLUG``: letters as Markdown files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from campaign.extensions import db
from campaign.letters import files, imports, services
from campaign.signatures import services as signatures

letters_cli = AppGroup("letters", help="Letter files: Markdown with YAML front matter.")

ACTIONS = ("created", "revised", "updated", "unchanged", "kept")


def default_folder() -> Path:
    """``letters/`` at the root of the checkout, beside the ``campaign`` package."""
    return Path(current_app.root_path).parent / "letters"


def report(outcomes: list[imports.Outcome]) -> str:
    """The counts line: "2 created, 1 unchanged; 1 error"."""
    counts = Counter(outcome.action for outcome in outcomes)
    done = ", ".join(f"{counts[action]} {action}" for action in ACTIONS if counts[action]) or "nothing imported"
    return f"{done}; {counts['error']} error{'' if counts['error'] == 1 else 's'}"


def import_and_commit(path: Path, *, author: object = None, create_only: bool = False) -> list[imports.Outcome]:
    """Import what is under ``path``, committing each file that imported (then handing over the
    reminder jobs a changed deadline moved); one line per file."""
    outcomes = []
    for outcome in imports.import_all(path, author=author, create_only=create_only):
        if outcome.ok:
            db.session.commit()
            signatures.dispatch_after_commit()
        click.echo(f"  {outcome}")
        outcomes.append(outcome)
    return outcomes


@letters_cli.command("import")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
def import_letters(path: Path) -> None:
    """Import a letter file, or every .md file of a folder (originals first, then translations).

    A letter is found by its slug: changed text adds a revision, unchanged text adds
    nothing, and the status in the file is reached by moving forward through the
    workflow.  A file with a problem is reported and nothing of it is imported; the
    command then exits with status 1.
    """
    if path.is_dir() and not files.source_paths(path):
        raise click.ClickException(f"no .md files in {path}")
    outcomes = import_and_commit(path)
    click.echo(report(outcomes))
    if not all(outcome.ok for outcome in outcomes):
        raise click.exceptions.Exit(1)


@letters_cli.command("export")
@click.argument("slug")
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write into (default: letters/ at the root of the checkout).",
)
def export_letter(slug: str, output: Path | None) -> None:
    """Write SLUG.md and SLUG.<language>.md for each translation; they import back unchanged."""
    letter = services.get_letter(slug)
    if letter is None:
        raise click.ClickException(f"no letter {slug!r}")
    for path in files.export_letter(letter, output or default_folder()):
        click.echo(f"Wrote {path}")
