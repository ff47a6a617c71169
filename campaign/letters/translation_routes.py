"""Translations, side by side with the original they are made from."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from campaign.extensions import db
from campaign.letters import bp, services
from campaign.letters.forms import TranslationForm, TranslationStatusForm
from campaign.letters.models import LANGUAGE_NAMES_EN, RTL_LANGUAGES, UN_LANGUAGES, Letter, TranslationStatus
from campaign.letters.routes import get_letter_or_404, wants_preview
from campaign.rendering import render
from campaign.security import staff_required

_LANGUAGE = "<any(" + ", ".join(UN_LANGUAGES) + "):lang>"


def _translatable(slug: str, lang: str) -> Letter:
    letter = get_letter_or_404(slug)
    if lang == letter.language:
        abort(404)  # the original is edited on its own page
    return letter


def _direction(lang: str) -> dict[str, str]:
    return {"lang": lang, "dir": "rtl" if lang in RTL_LANGUAGES else "ltr"}


@bp.route(f"/<slug>/translations/{_LANGUAGE}", methods=["GET", "POST"])
@staff_required
def translation(slug: str, lang: str) -> str | Response:
    letter = _translatable(slug, lang)
    existing = letter.translation(lang)
    revision = existing.current_revision if existing else None
    form = TranslationForm(
        data={"title": revision.title, "addressee": revision.addressee, "body_markdown": revision.body_markdown}
        if revision
        else {}
    )
    # The translation's own direction on its text areas; single-line inputs follow their content.
    for field in (form.addressee, form.body_markdown):
        field.render_kw = {**(field.render_kw or {}), **_direction(lang)}
    form.title.render_kw = {**(form.title.render_kw or {}), "lang": lang, "dir": "auto"}
    preview = render(form.body_markdown.data or "") if wants_preview() else None
    if preview is None and form.validate_on_submit():
        before = revision.id if revision else None
        try:
            saved = services.save_translation(letter, lang, form.text(), author=current_user)
        except services.LetterError as exc:
            db.session.rollback()
            flash(str(exc), "error")
        else:
            db.session.commit()
            if saved.current_revision_id == before:
                flash("The translation is unchanged: no new revision was saved.", "info")
            else:
                flash(f"Saved the {LANGUAGE_NAMES_EN[lang]} translation.", "success")
            return redirect(url_for("letters.translation", slug=letter.slug, lang=lang))
    if preview is None and form.body_markdown.data:
        preview = render(form.body_markdown.data)
    original = letter.published_revision or letter.current_revision
    return render_template(
        "letters/admin/translation.html",
        letter=letter,
        translation=existing,
        lang=lang,
        language_name=LANGUAGE_NAMES_EN[lang],
        original=original,
        original_direction=_direction(letter.language),
        direction=_direction(lang),
        form=form,
        preview=preview,
        outdated=existing is not None and existing.is_outdated,
        statuses=list(TranslationStatus),
    )


@bp.route(f"/<slug>/translations/{_LANGUAGE}/status", methods=["POST"])
@staff_required
def translation_status(slug: str, lang: str) -> Response:
    letter = _translatable(slug, lang)
    translation = letter.translation(lang) or abort(404)
    form = TranslationStatusForm()
    if form.validate_on_submit():
        try:
            services.set_translation_status(translation, form.status.data, actor=current_user)
        except services.LetterError as exc:
            db.session.rollback()
            flash(str(exc), "error")
        else:
            db.session.commit()
            flash(f"The {LANGUAGE_NAMES_EN[lang]} translation is now {translation.status}.", "success")
    else:
        flash("Choose draft, review or published.", "error")
    return redirect(url_for("letters.translation", slug=letter.slug, lang=lang))
