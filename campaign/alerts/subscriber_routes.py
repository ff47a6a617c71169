"""Coordinators' pages for subscribers and topics: the list with counts and growth, a subscriber's
page (unsubscribe, delete), and the topics supporters can follow.  Every action is in the audit log."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, request, url_for
from markupsafe import Markup
from sqlalchemy.orm import selectinload
from werkzeug.wrappers import Response

from campaign import audit, charts
from campaign.alerts import admin_bp, subscribers
from campaign.alerts.forms import DeleteForm, RenameTopicForm, SubscriberFilterForm, TopicForm
from campaign.alerts.models import Alert, AlertDelivery, Subscriber, Topic
from campaign.alerts.subscribers import GrowthPoint, SubscriberError, SubscriberFilter
from campaign.auth.forms import ConfirmForm
from campaign.db import page_arg
from campaign.extensions import db
from campaign.forms import choices
from campaign.security import staff_required

PER_PAGE = 50


def _filter_form() -> SubscriberFilterForm:
    form = SubscriberFilterForm(request.args)
    topics = db.session.scalars(sa.select(Topic).order_by(Topic.position, Topic.label))
    form.topic.choices = choices(
        [("", "Any topic"), *((str(t.id), t.label + ("" if t.active else " (retired)")) for t in topics)]
    )
    return form


def _criteria(form: SubscriberFilterForm) -> SubscriberFilter:
    if not form.validate():
        return SubscriberFilter()
    topic = form.topic.data or ""
    return SubscriberFilter(
        q=form.q.data or "",
        status=form.status.data or "",
        topic=int(topic) if topic.isdigit() else None,
        language=form.language.data or "",
    )


def growth_svg(points: Sequence[GrowthPoint], by: str, chart_id: str = "growth") -> Markup:
    """Subscribers over time as a step line; the page prints the same figures as a table."""
    period = "week" if by == "week" else "day"
    if points:
        description = (
            f"{points[-1].total} subscribers in the {period} of {points[-1].start:%d %B %Y}, "
            f"from {points[0].total} in the {period} of {points[0].start:%d %B %Y}."
        )
    else:
        description = "No confirmed subscribers yet."
    root = charts.svg(chart_id, f"Subscribers by {period}", description)
    plot_w, plot_h = charts.WIDTH - charts.MARGIN_LEFT - 16, charts.HEIGHT - charts.MARGIN_BOTTOM - charts.MARGIN_TOP
    left, base = charts.MARGIN_LEFT, charts.MARGIN_TOP + plot_h
    ET.SubElement(root, "line", {"x1": str(left), "y1": str(base), "x2": str(charts.WIDTH - 16), "y2": str(base),
                                 "stroke": charts.INK})  # fmt: skip
    charts.text(root, left - 6, base, "0", "end")
    if not points:
        charts.text(root, charts.WIDTH / 2, base - plot_h / 2, "No confirmed subscribers yet", "middle")
        return charts.markup(root)
    peak = max(max(point.total for point in points), 1)
    charts.text(root, left - 6, charts.MARGIN_TOP + 4, str(peak), "end")
    step = plot_w / max(len(points) - 1, 1)
    coordinates, previous_y = [], base
    for n, point in enumerate(points):
        x, y = left + n * step, base - plot_h * max(point.total, 0) / peak
        coordinates += [f"{x:.1f},{previous_y:.1f}", f"{x:.1f},{y:.1f}"]
        previous_y = y
    ET.SubElement(root, "polyline", {"points": " ".join(coordinates), "fill": "none", "stroke": charts.ACCENT,
                                     "stroke-width": "2"})  # fmt: skip
    charts.text(root, left, charts.HEIGHT - 12, f"{points[0].start:%d %b %Y}")
    if len(points) > 1:
        charts.text(root, charts.WIDTH - 16, charts.HEIGHT - 12, f"{points[-1].start:%d %b %Y}", "end")
    return charts.markup(root)


@admin_bp.route("/subscribers")
@staff_required
def subscribers_list() -> str:
    """Subscribers, searchable and filtered, with counts by state, topic and language and their growth."""
    form = _filter_form()
    query = subscribers.filter_query(_criteria(form)).options(selectinload(Subscriber.topics))
    page = db.paginate(query, page=page_arg(), per_page=PER_PAGE, error_out=False)
    by = "day" if request.args.get("by") == "day" else "week"
    points = subscribers.growth(by)
    return render_template(
        "alerts/subscribers.html",
        form=form,
        page=page,
        args=form.args(),
        counts=subscribers.status_counts(),
        by_topic=subscribers.counts_by_topic(),
        by_language=subscribers.counts_by_language(),
        growth=points,
        by=by,
        growth_svg=growth_svg(points, by),
    )


def _subscriber_or_404(id: int) -> Subscriber:
    return subscribers.get_subscriber(id) or abort(404)


@admin_bp.route("/subscribers/<int:id>")
@staff_required
def subscriber(id: int) -> str:
    found = _subscriber_or_404(id)
    deliveries = db.session.scalars(
        sa.select(AlertDelivery)
        .where(AlertDelivery.subscriber_id == found.id)
        .options(selectinload(AlertDelivery.alert).selectinload(Alert.texts))
        .order_by(AlertDelivery.id.desc())
    ).all()
    return render_template(
        "alerts/subscriber.html",
        subscriber=found,
        deliveries=deliveries,
        unsubscribe_form=ConfirmForm(formdata=None),
        delete_form=DeleteForm(formdata=None),
    )


@admin_bp.route("/subscribers/<int:id>/unsubscribe", methods=["POST"])
@staff_required
def unsubscribe_subscriber(id: int) -> Response:
    found = _subscriber_or_404(id)
    if ConfirmForm().validate_on_submit():
        subscribers.unsubscribe(found, "coordinator")
        audit.record("subscribers.unsubscribe", found, f"Unsubscribed subscriber {found.id}")
        db.session.commit()
        flash("The subscriber is unsubscribed: no more alerts go to them.", "success")
    return redirect(url_for("alerts_admin.subscriber", id=id))


@admin_bp.route("/subscribers/<int:id>/delete", methods=["POST"])
@staff_required
def delete_subscriber(id: int) -> Response | tuple[str, int]:
    found = _subscriber_or_404(id)
    form = DeleteForm()
    if not form.validate_on_submit():
        flash("Tick the box to confirm the deletion.", "error")
        return redirect(url_for("alerts_admin.subscriber", id=id))
    audit.record("subscribers.delete", found, f"Deleted subscriber {found.id} and their data")
    subscribers.delete(found)
    db.session.commit()
    flash("The subscriber and their data are deleted.", "success")
    return redirect(url_for("alerts_admin.subscribers_list"))


# --- topics ------------------------------------------------------------------------------------


def _topic_or_404(id: int) -> Topic:
    return db.session.get(Topic, id) or abort(404)


@admin_bp.route("/subscribers/topics", methods=["GET", "POST"])
@staff_required
def topics() -> Response | tuple[str, int]:
    """The topics supporters choose from: built-ins, then the countries and situations listed."""
    form = TopicForm()
    if form.validate_on_submit():
        try:
            topic = subscribers.add_topic(form.kind.data, form.label.data, form.country.data or None)
        except SubscriberError as error:
            db.session.rollback()
            target = getattr(form, error.field or "label", form.label)
            target.errors = [*target.errors, str(error)]
        else:
            audit.record("topics.add", topic, f"Listed the topic {topic.label}", key=topic.key)
            db.session.commit()
            flash(f"“{topic.label}” is offered to supporters.", "success")
            return redirect(url_for("alerts_admin.topics"))
    return render_template(
        "alerts/topics.html",
        form=form,
        topics=subscribers.counts_by_topic(),
        rename=RenameTopicForm(formdata=None),
        builtin=subscribers.BUILTIN_KINDS,
    ), (400 if request.method == "POST" else 200)


@admin_bp.route("/subscribers/topics/<int:id>/rename", methods=["POST"])
@staff_required
def rename_topic(id: int) -> Response:
    topic = _topic_or_404(id)
    form = RenameTopicForm()
    if not form.validate_on_submit():
        flash("; ".join(error for errors in form.errors.values() for error in errors), "error")
        return redirect(url_for("alerts_admin.topics"))
    old = topic.label
    try:
        subscribers.rename_topic(topic, form.label.data)
    except SubscriberError as error:
        db.session.rollback()
        flash(str(error), "error")
        return redirect(url_for("alerts_admin.topics"))
    audit.record("topics.rename", topic, f"Renamed the topic {old} to {topic.label}", old=old, new=topic.label)
    db.session.commit()
    flash(f"Renamed to “{topic.label}”.", "success")
    return redirect(url_for("alerts_admin.topics"))


def _set_active(id: int, active: bool) -> Response:
    topic = _topic_or_404(id)
    if not ConfirmForm().validate_on_submit():
        return redirect(url_for("alerts_admin.topics"))
    try:
        subscribers.set_topic_active(topic, active)
    except SubscriberError as error:
        db.session.rollback()
        flash(str(error), "error")
        return redirect(url_for("alerts_admin.topics"))
    action = "restore" if active else "retire"
    summary = f"Offered the topic {topic.label} again" if active else f"Retired the topic {topic.label}"
    audit.record(f"topics.{action}", topic, summary)
    db.session.commit()
    flash(summary + ".", "success")
    return redirect(url_for("alerts_admin.topics"))


@admin_bp.route("/subscribers/topics/<int:id>/retire", methods=["POST"])
@staff_required
def retire_topic(id: int) -> Response:
    """No longer offered; subscribers who follow it keep it (and alerts on it still reach them)."""
    return _set_active(id, False)


@admin_bp.route("/subscribers/topics/<int:id>/restore", methods=["POST"])
@staff_required
def restore_topic(id: int) -> Response:
    return _set_active(id, True)
