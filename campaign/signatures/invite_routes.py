"""Coordinators invite member organisations to sign a letter, and see who was invited, reminded, signed."""

from __future__ import annotations

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from campaign.auth.models import Organisation
from campaign.extensions import db
from campaign.forms import choices
from campaign.letters import services as letters
from campaign.security import staff_required
from campaign.signatures import bp, services
from campaign.signatures.forms import InviteForm
from campaign.signatures.models import Invitation


@bp.route("/admin/letters/<slug>/invite", methods=["GET", "POST"])
@staff_required
def invite(slug: str) -> str | Response:
    letter = letters.get_letter(slug) or abort(404)
    members = db.session.scalars(
        sa.select(Organisation).where(Organisation.member.is_(True)).order_by(Organisation.name)
    ).all()
    invitations = {
        i.organisation_id: i for i in db.session.scalars(sa.select(Invitation).where(Invitation.letter_id == letter.id))
    }
    signed = {org.id: services.signature_of(letter, org) for org in members}
    form = InviteForm()
    form.organisations.choices = choices((str(org.id), org.name) for org in members if org.id not in invitations)
    if form.validate_on_submit():
        wanted = set(form.organisations.data or [])
        chosen = [org for org in members if form.all_members.data or org.id in wanted]
        if not chosen:
            flash("Choose the organisations to invite, or all members.", "error")
        else:
            try:
                count = services.invite(letter, chosen, current_user)
            except services.SignatureError as exc:
                db.session.rollback()
                flash(str(exc), "error")
            else:
                db.session.commit()
                services.dispatch_after_commit()
                flash(f"Invited {count} organisation{'s' if count != 1 else ''}.", "success")
                return redirect(url_for("signatures.invite", slug=letter.slug))
    return render_template(
        "signatures/invite.html",
        letter=letter,
        form=form,
        members=members,
        invitations=invitations,
        signed=signed,
        live=services.LIVE,
        closed_reason=services.why_not_signable(letter),
    )
