"""The admin dashboard, the coalition's settings and the audit log."""

from __future__ import annotations

import sqlalchemy as sa
from flask import current_app, flash, redirect, render_template, request, url_for
from werkzeug.datastructures import FileStorage
from werkzeug.wrappers import Response

from campaign import queue
from campaign.admin import bp, services
from campaign.admin.forms import AuditFilterForm, SettingsForm
from campaign.auth.models import Organisation, User
from campaign.db import page_arg
from campaign.extensions import db
from campaign.forms import choices
from campaign.queue import Job
from campaign.security import admin_required, staff_required


@bp.route("")
@staff_required
def dashboard() -> str:
    counts = {
        "users": db.session.scalar(sa.select(sa.func.count()).select_from(User)),
        "organisations": db.session.scalar(sa.select(sa.func.count()).select_from(Organisation)),
        "members": db.session.scalar(
            sa.select(sa.func.count()).select_from(Organisation).where(Organisation.member.is_(True))
        ),
    }
    backend = current_app.extensions["mail_backend"].name
    return render_template(
        "admin/dashboard.html",
        counts=counts,
        backend=backend,
        queue_mode=queue.mode(),
        jobs=queue_counts(),
        database=db.engine.dialect.name,
    )


def queue_counts() -> dict[str, int]:
    rows = db.session.execute(sa.select(Job.status, sa.func.count()).group_by(Job.status))
    return dict(rows.all())


@bp.route("/jobs")
@staff_required
def jobs() -> str:
    status = request.args.get("status", "")
    query = sa.select(Job).order_by(Job.id.desc())
    if status:
        query = query.where(Job.status == status)
    page = db.paginate(query, page=page_arg(), per_page=50, error_out=False)
    return render_template("admin/jobs.html", page=page, status=status, counts=queue_counts())


@bp.route("/settings", methods=["GET", "POST"])
@admin_required
def settings() -> str | Response:
    current = services.get_settings()
    form = SettingsForm(obj=current)
    if form.validate_on_submit():
        # Without an upload the field holds the stored logo's bytes (the form was built from the row).
        upload = form.logo.data if isinstance(form.logo.data, FileStorage) else None
        logo = upload.read(current_app.config["LOGO_MAX_BYTES"] + 1) if upload else None
        data = services.SettingsData(
            name=form.name.data,
            letterhead=form.letterhead.data or "",
            mail_from_name=form.mail_from_name.data or "",
            mail_from_address=(form.mail_from_address.data or "").strip().lower(),
            reply_to=(form.reply_to.data or "").strip().lower(),
            postal_address=form.postal_address.data or "",
            privacy_notice=form.privacy_notice.data or "",
            default_timezone=form.default_timezone.data,
        )
        try:
            services.update_settings(
                data, logo=logo, remove_logo=form.remove_logo.data, max_logo=current_app.config["LOGO_MAX_BYTES"]
            )
        except services.SettingsError as exc:
            db.session.rollback()
            flash(str(exc), "error")
        else:
            db.session.commit()
            flash("Settings saved.", "success")
            return redirect(url_for("admin.settings"))
    return render_template("admin/settings.html", form=form, current=current)


@bp.route("/audit")
@staff_required
def audit_log() -> str:
    form = AuditFilterForm(request.args)
    actions, object_types = services.audit_choices()
    form.action.choices = choices([("", "Any action"), *((a, a) for a in actions)])
    form.object_type.choices = choices([("", "Anything"), *((t, t) for t in object_types)])
    criteria = services.AuditFilter()
    if form.validate():
        criteria = services.AuditFilter(
            actor=form.actor.data or "",
            action=form.action.data or "",
            object_type=form.object_type.data or "",
            since=form.since.data,
            until=form.until.data,
        )
    page = db.paginate(services.audit_query(criteria), page=page_arg(), per_page=50, error_out=False)
    args = {k: v for k, v in request.args.items() if k != "page" and v}
    return render_template("admin/audit.html", form=form, page=page, args=args)
