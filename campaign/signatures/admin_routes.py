"""Coordinators' moderation of public signatures: the queue, one signature's page, decisions."""

from __future__ import annotations

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy.orm import selectinload
from werkzeug.wrappers import Response

from campaign.db import page_arg
from campaign.extensions import db
from campaign.letters.models import Letter
from campaign.security import staff_required
from campaign.signatures import admin_bp, moderation
from campaign.signatures.models import Signature, SignatureSource, SignatureStatus
from campaign.signatures.services import SignatureError
from campaign.signatures.signon_forms import BulkForm, RejectForm

PER_PAGE = 50
STATUS_FILTERS = {s.value: s.label for s in SignatureStatus}


def _filters() -> dict[str, str]:
    """The queue's filters from the query string; by default, what awaits approval."""
    status = request.args.get("status", SignatureStatus.PENDING_APPROVAL.value)
    args = {"status": status if status in STATUS_FILTERS or status == "all" else SignatureStatus.PENDING_APPROVAL}
    letter = request.args.get("letter", "")
    if letter:
        args["letter"] = letter[:120]
    return {k: str(v) for k, v in args.items()}


def _back(default_args: dict[str, str] | None = None) -> Response:
    """Back to the queue with the filters the form carried (or the detail page it came from)."""
    target = request.form.get("next", "")
    if target.startswith("/admin/signatures") and "//" not in target and "\\" not in target:
        return redirect(target)
    return redirect(url_for("signatures_admin.queue", **(default_args or {})))


@admin_bp.route("")
@staff_required
def queue() -> str:
    args = _filters()
    query = (
        sa.select(Signature)
        .options(selectinload(Signature.letter).selectinload(Letter.current_revision))
        .order_by(Signature.verified_at.asc().nulls_last(), Signature.id)
    )
    if args["status"] != "all":
        query = query.where(Signature.status == args["status"])
    if "letter" in args:
        query = query.join(Letter, Signature.letter_id == Letter.id).where(Letter.slug == args["letter"])
    page = db.paginate(query, page=page_arg(), per_page=PER_PAGE, error_out=False)
    letters = db.session.scalars(
        sa.select(Letter).where(Letter.id.in_(sa.select(Signature.letter_id).distinct())).order_by(Letter.slug)
    ).all()
    return render_template(
        "signatures/admin/queue.html",
        page=page,
        args=args,
        letters=letters,
        statuses=STATUS_FILTERS,
        bulk=BulkForm(),
        reject_form=RejectForm(),
        pending=SignatureStatus.PENDING_APPROVAL.value,
    )


def _signature(signature_id: int) -> Signature:
    signature = db.session.get(Signature, signature_id)
    if signature is None:
        abort(404)
    return signature


@admin_bp.route("/<id:signature_id>")
@staff_required
def signature(signature_id: int) -> str:
    sig = _signature(signature_id)
    return render_template(
        "signatures/admin/signature.html",
        signature=sig,
        reject_form=RejectForm(),
        pending=sig.status == SignatureStatus.PENDING_APPROVAL,
        public=sig.source == SignatureSource.PUBLIC,
    )


def _decided(signatures: list[Signature]) -> None:
    """Commit, then tell the signers: mail leaves only once the decision is saved."""
    db.session.commit()
    moderation.notify(signatures)


@admin_bp.route("/<id:signature_id>/approve", methods=["POST"])
@staff_required
def approve(signature_id: int) -> Response:
    sig = _signature(signature_id)
    try:
        moderation.approve(sig, current_user)
    except SignatureError as error:
        db.session.rollback()
        flash(str(error), "error")
        return _back()
    name = sig.organisation_name
    _decided([sig])
    flash(f"Approved the signature of {name}; the signer is told.", "success")
    return _back()


@admin_bp.route("/<id:signature_id>/reject", methods=["POST"])
@staff_required
def reject(signature_id: int) -> Response:
    sig = _signature(signature_id)
    form = RejectForm()
    try:
        if not form.validate_on_submit():
            raise SignatureError(next(iter(form.reason.errors), "The form expired: reload the page and try again."))
        moderation.reject(sig, form.reason.data, current_user)
    except SignatureError as error:
        db.session.rollback()
        flash(str(error), "error")
        return _back()
    name = sig.organisation_name
    _decided([sig])
    flash(f"Rejected the signature of {name}; the signer is told why.", "success")
    return _back()


@admin_bp.route("/bulk", methods=["POST"])
@staff_required
def bulk() -> Response:
    form = BulkForm()
    ids = [int(i) for i in request.form.getlist("ids") if i.isdigit() and len(i) < 10]
    action = request.form.get("action")
    if not form.validate_on_submit() or action not in ("approve", "reject"):
        flash("The form was incomplete: choose Approve or Reject, with a reason on one line.", "error")
        return _back()
    if not ids:
        flash("Tick the signatures to decide first.", "error")
        return _back()
    try:
        if action == "approve":
            outcome = moderation.approve_many(ids, current_user)
        else:
            outcome = moderation.reject_many(ids, form.reason.data or "", current_user)
    except SignatureError as error:
        db.session.rollback()
        flash(str(error), "error")
        return _back()
    decided = outcome.decided
    _decided(decided)
    verb = "Approved" if action == "approve" else "Rejected"
    message = f"{verb} {len(decided)} signature{'' if len(decided) == 1 else 's'}"
    if outcome.skipped:
        message += f"; skipped {outcome.skipped} not awaiting approval"
    flash(message + ".", "success")
    return _back()
