"""Coordinators' pages for letters: list, drafting with a live preview, history and diff, the workflow.

Translations are in ``translation_routes``, meetings in ``meeting_routes``.
"""

from __future__ import annotations

import sqlalchemy as sa
from flask import abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy.orm import contains_eager, selectinload
from werkzeug.wrappers import Response
from wtforms.fields.choices import SelectChoice

from campaign.auth.forms import ConfirmForm
from campaign.db import page_arg, utcnow
from campaign.extensions import db
from campaign.forms import choices
from campaign.letters import bp, services
from campaign.letters.forms import LetterForm, utc_to_local
from campaign.letters.models import LANGUAGE_NAMES_EN, UN_LANGUAGES, Letter, LetterStatus, Meeting, Revision
from campaign.rendering import Rendered, render
from campaign.security import staff_required

PER_PAGE = 50
#: Long unchanged stretches of a diff are folded, keeping this many lines (not counting blank ones) around changes.
DIFF_CONTEXT = 2


def get_letter_or_404(slug: str) -> Letter:
    return services.get_letter(slug) or abort(404)


def meeting_choices() -> list[SelectChoice]:
    def label(meeting: Meeting) -> str:
        when = f"{meeting.starts_at_local:%d %b %Y}"
        return f"{meeting.title} ({when}, {meeting.location})" if meeting.location else f"{meeting.title} ({when})"

    meetings = db.session.scalars(sa.select(Meeting).order_by(Meeting.starts_at.desc()))
    return choices([("", "— none —"), *((str(m.id), label(m)) for m in meetings)])


def _meeting_from_form(form: LetterForm) -> Meeting | None:
    value = form.meeting.data or ""
    if not (value.isascii() and value.isdigit() and len(value) <= 9):
        return None
    return db.session.get(Meeting, int(value))


def public_url(letter: Letter) -> str | None:
    """The letter's public page, once the public may read it."""
    if not letter.is_public():
        return None
    return url_for("public.letter", slug=letter.slug)


def wants_preview() -> bool:
    """The form's "Preview" button (the page without JavaScript): render, save nothing."""
    return request.method == "POST" and "preview" in request.form


# --- list, create, edit ------------------------------------------------------


@bp.route("")
@staff_required
def letters() -> str:
    q = request.args.get("q", "").strip()
    status = request.args.get("status", "")
    query = (
        sa.select(Letter)
        .outerjoin(Revision, Revision.id == Letter.current_revision_id)
        .options(contains_eager(Letter.current_revision), selectinload(Letter.meeting))
        .options(selectinload(Letter.translations))
        .order_by(Letter.updated_at.desc(), Letter.id.desc())
    )
    if q:
        query = query.where(
            sa.or_(Revision.title.icontains(q, autoescape=True), Letter.slug.icontains(q, autoescape=True))
        )
    if status in {s.value for s in LetterStatus}:
        query = query.where(Letter.status == status)
    page = db.paginate(query, page=page_arg(), per_page=PER_PAGE, error_out=False)
    return render_template(
        "letters/admin/letters.html", page=page, q=q, status=status, statuses=list(LetterStatus), languages=UN_LANGUAGES
    )


@bp.route("/new", methods=["GET", "POST"])
@staff_required
def new_letter() -> str | Response:
    form = LetterForm()
    form.meeting.choices = meeting_choices()
    preview = render(form.body_markdown.data or "") if wants_preview() else None
    if preview is None and form.validate_on_submit():
        try:
            letter = services.create_letter(
                form.text(),
                language=form.language.data,
                slug=form.slug.data or None,
                author=current_user,
                signature_deadline=form.deadline_utc(),
                embargo_until=form.embargo_utc(),
                meeting=_meeting_from_form(form),
                members_only=form.members_only.data,
            )
        except services.LetterError as exc:
            db.session.rollback()
            flash(str(exc), "error")
        else:
            db.session.commit()
            flash(f"Drafted {letter.title!r} as revision 1.", "success")
            return redirect(url_for("letters.letter", slug=letter.slug))
    return render_template("letters/admin/letter_form.html", form=form, letter=None, preview=preview)


@bp.route("/<slug>/edit", methods=["GET", "POST"])
@staff_required
def edit_letter(slug: str) -> str | Response:
    from campaign.signatures import services as signatures

    letter = get_letter_or_404(slug)
    if letter.status_enum is LetterStatus.SENT:
        flash("This letter has been sent: its text and settings are final.", "info")
        return redirect(url_for("letters.letter", slug=letter.slug))
    current = letter.current_revision
    form = LetterForm(
        data={
            "title": current.title,
            "addressee": current.addressee,
            "body_markdown": current.body_markdown,
            "signature_deadline": utc_to_local(letter.signature_deadline),
            "embargo_until": utc_to_local(letter.embargo_until),
            "meeting": str(letter.meeting_id or ""),
            "members_only": letter.members_only,
        }
    )
    del form.slug, form.language
    form.meeting.choices = meeting_choices()
    preview = render(form.body_markdown.data or "") if wants_preview() else None
    if preview is None and form.validate_on_submit():
        settings_before = _settings(letter)
        try:
            revision = services.save_revision(letter, form.text(), author=current_user)
            services.update_settings(
                letter,
                signature_deadline=form.deadline_utc(),
                embargo_until=form.embargo_utc(),
                meeting=_meeting_from_form(form),
                members_only=form.members_only.data,
            )
        except services.LetterError as exc:
            db.session.rollback()
            flash(str(exc), "error")
        else:
            settings_changed = settings_before != _settings(letter)
            db.session.commit()
            signatures.dispatch_after_commit()
            _flash_saved(letter, revision, settings_changed)
            return redirect(url_for("letters.letter", slug=letter.slug))
    if preview is None:  # the page opens on a preview of the text being edited
        preview = render(form.body_markdown.data or "")
    return render_template("letters/admin/letter_form.html", form=form, letter=letter, preview=preview)


def _settings(letter: Letter) -> tuple[object, ...]:
    return letter.signature_deadline, letter.embargo_until, letter.meeting_id, letter.members_only


def _flash_saved(letter: Letter, revision: Revision | None, settings_changed: bool) -> None:
    if revision is None:
        flash("The text is unchanged: no new revision was saved.", "info")
    elif letter.is_published:
        flash(
            f"Saved revision {revision.number}. The public still reads revision {letter.published_revision.number} "
            "until you publish the changes.",
            "success",
        )
    else:
        flash(f"Saved revision {revision.number}.", "success")
    if settings_changed:
        flash("Settings saved.", "success")


@bp.route("/preview", methods=["POST"])
@staff_required
def preview() -> Response:
    """The live preview: Markdown in, sanitised HTML and what was removed out (CSRF token in a header)."""
    markdown = request.form.get("markdown", "")
    if len(markdown) > services.MAX_BODY:
        return jsonify(error=f"The text is longer than {services.MAX_BODY:,} characters."), 413
    rendered: Rendered = render(markdown)
    return jsonify(html=rendered.html, removed=rendered.removed)


# --- the letter, its workflow ------------------------------------------------


@bp.route("/<slug>")
@staff_required
def letter(slug: str) -> str:
    letter = get_letter_or_404(slug)
    return render_template(
        "letters/admin/letter.html",
        letter=letter,
        moves=services.allowed_moves(letter),
        languages=UN_LANGUAGES,
        names_en=LANGUAGE_NAMES_EN,
        public_url=public_url(letter),
    )


@bp.route("/<slug>/transition/<to>", methods=["GET", "POST"])
@staff_required
def transition(slug: str, to: str) -> str | Response:
    """GET says what the move will do; POST (a confirmed form) makes it."""
    from campaign.signatures import services as signatures

    letter = get_letter_or_404(slug)
    try:
        target = LetterStatus(to)
    except ValueError:
        abort(404)
    if target not in services.allowed_moves(letter):
        flash(f"A letter that is {letter.status_enum.label.lower()} cannot become {target.label.lower()}.", "error")
        return redirect(url_for("letters.letter", slug=letter.slug))
    form = ConfirmForm()
    if form.validate_on_submit():
        before = letter.status_enum
        try:
            services.transition(letter, target.value, actor=current_user)
        except services.LetterError as exc:
            db.session.rollback()
            flash(str(exc), "error")
        else:
            db.session.commit()
            signatures.dispatch_after_commit()
            flash(f"{letter.title}: {before.label.lower()} → {target.label.lower()}.", "success")
        return redirect(url_for("letters.letter", slug=letter.slug))
    return render_template("letters/admin/transition.html", letter=letter, target=target, form=form, now=utcnow())


@bp.route("/<slug>/publish", methods=["GET", "POST"])
@staff_required
def publish_changes(slug: str) -> str | Response:
    from campaign.signatures import services as signatures
    from campaign.signatures.forms import PublishChangesForm

    letter = get_letter_or_404(slug)
    form = PublishChangesForm()
    if form.validate_on_submit():
        asked = 0
        try:
            revision = services.publish_changes(letter, actor=current_user)
            if form.substantive.data:
                asked = signatures.mark_for_reconfirmation(letter, actor=current_user)
        except services.LetterError as exc:
            db.session.rollback()
            flash(str(exc), "error")
        else:
            db.session.commit()
            signatures.dispatch_after_commit()
            flash(f"Revision {revision.number} is now the published text.", "success")
            if form.substantive.data:
                flash(f"Asked {asked} signator{'ies' if asked != 1 else 'y'} to re-confirm.", "info")
        return redirect(url_for("letters.letter", slug=letter.slug))
    return render_template("letters/admin/publish.html", letter=letter, form=form)


# --- history -----------------------------------------------------------------


def _language_arg(letter: Letter) -> str:
    language = request.args.get("language") or letter.language
    if language not in UN_LANGUAGES:
        abort(404)
    return language


@bp.route("/<slug>/revisions")
@staff_required
def revisions(slug: str) -> str:
    letter = get_letter_or_404(slug)
    language = _language_arg(letter)
    found = services.revisions(letter, language)
    translation = letter.translation(language) if language != letter.language else None
    published_id = translation.published_revision_id if translation else letter.published_revision_id
    return render_template(
        "letters/admin/revisions.html",
        letter=letter,
        revisions=found,
        language=language,
        languages=UN_LANGUAGES,
        published_id=published_id,
    )


@bp.route("/<slug>/diff")
@staff_required
def diff(slug: str) -> str:
    letter = get_letter_or_404(slug)
    language = _language_arg(letter)
    numbers = [r.number for r in services.revisions(letter, language)]  # newest first
    if not numbers:
        abort(404)
    new_number = request.args.get("to", numbers[0], type=int)
    old_number = request.args.get("from", numbers[1] if len(numbers) > 1 else numbers[0], type=int)
    old = services.get_revision(letter, old_number, language) or abort(404)
    new = services.get_revision(letter, new_number, language) or abort(404)
    pieces = services.diff(old, new)
    return render_template(
        "letters/admin/diff.html",
        letter=letter,
        old=old,
        new=new,
        numbers=numbers,
        language=language,
        blocks=fold_unchanged(pieces, request.args.get("full") != "1"),
        added=sum(len(p.text.split()) for p in pieces if p.kind == "added"),
        removed=sum(len(p.text.split()) for p in pieces if p.kind == "removed"),
        full=request.args.get("full") == "1",
    )


def fold_unchanged(pieces: list[services.DiffLine], fold: bool = True) -> list[tuple[str, str]]:
    """The diff as (kind, text) blocks, long unchanged stretches as ("folded", text) between context.

    A long letter with one changed word then reads as that word and the paragraphs around it.
    """
    blocks: list[tuple[str, str]] = []
    last = len(pieces) - 1
    for i, piece in enumerate(pieces):
        lines = piece.text.split("\n")
        # Context around a change: its own line (the part that did not change) and DIFF_CONTEXT more.
        start = _after_lines(lines, DIFF_CONTEXT + bool(lines[0].strip()) if i > 0 else 0)
        end = len(lines) - _after_lines(lines[::-1], DIFF_CONTEXT + bool(lines[-1].strip()) if i < last else 0)
        while start < end and not lines[start].strip():  # blank lines stay with the context
            start += 1
        while end > start and not lines[end - 1].strip():
            end -= 1
        if not fold or piece.kind != "same" or sum(1 for line in lines[start:end] if line.strip()) < 3:
            blocks.append((piece.kind, piece.text))
            continue
        head = "".join(line + "\n" for line in lines[:start])
        tail = "".join("\n" + line for line in lines[end:])
        blocks += [("same", head), ("folded", "\n".join(lines[start:end])), ("same", tail)]
    return [(kind, text) for kind, text in blocks if text]


def _after_lines(lines: list[str], keep: int) -> int:
    """How many of ``lines`` it takes to include ``keep`` that are not blank."""
    if keep == 0:
        return 0
    seen = 0
    for n, line in enumerate(lines, 1):
        seen += bool(line.strip())
        if seen == keep:
            return n
    return len(lines)
