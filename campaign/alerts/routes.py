"""The supporters' pages: subscribe, confirm by POST, preferences, unsubscribe, export and deletion.

Every page reached by a signed link answers the same "this link does not work" for a
forged, expired or revoked token and for a deleted subscriber, so a link says nothing
about whether an address is known.  None of these pages is cached (``pagecache`` only
caches letters' public pages), and each answers ``Cache-Control: no-store``.
"""

from __future__ import annotations

import json

from flask import current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from campaign import audit
from campaign.alerts import bp, subscribers, tokens
from campaign.alerts.forms import DeleteForm, PreferencesForm, ResumeForm, SubscribeForm
from campaign.alerts.models import Subscriber, SubscriberStatus
from campaign.alerts.subscribers import SubscribeRequest, SubscriberError
from campaign.auth.forms import ConfirmForm
from campaign.db import writes_on_post
from campaign.extensions import csrf, db, limiter

MESSAGE = "alerts/message.html"


def _limit() -> str:
    """Subscribing and confirming share the sign-on's per-IP limit setting (``SIGNON_RATE_LIMIT``)."""
    return current_app.config["SIGNON_RATE_LIMIT"]


def _private(body: str, status: int = 200) -> Response:
    response = current_app.make_response((body, status))
    response.headers["Cache-Control"] = "no-store"
    return response


def _message(title: str, *paragraphs: str, status: int = 200, links: tuple[tuple[str, str], ...] = ()) -> Response:
    return _private(render_template(MESSAGE, title=title, paragraphs=paragraphs, links=links), status)


def _preferences_link(subscriber: Subscriber) -> str:
    return url_for("alerts.preferences", token=tokens.make_token(subscriber, "preferences"))


def _invalid_link(status: int = 404) -> Response:
    return _message(
        "This link does not work",
        "The link is incomplete, too old, or no longer valid (for instance because the subscription was deleted).",
        "You can subscribe again: we will send a new link.",
        status=status,
        links=((url_for("alerts.subscribe"), "Subscribe to alerts"),),
    )


def _apply_errors(form: SubscribeForm | PreferencesForm, error: SubscriberError) -> None:
    """Show a service's refusal on the field it names (the first field when it names none)."""
    target = getattr(form, error.field, None) if error.field else None
    if target is None:
        target = getattr(form, "email", None) or form.name
    target.errors = [*target.errors, str(error)]


@bp.route("/subscribe", methods=["GET", "POST"])
@limiter.limit(_limit, methods=["POST"])
@writes_on_post
def subscribe() -> Response:
    """The same answer for every address (new, pending, confirmed, unsubscribed, suppressed)."""
    topics = subscribers.offered_topics()
    form = SubscribeForm(topics=topics)
    if request.method == "GET" and not form.topics.data:
        form.topics.data = [str(topic.id) for topic in topics if topic.key == "letters"]
    consent = subscribers.consent_text()
    if form.validate_on_submit():
        if form.website.data:  # a bot: answer as if it worked, record nothing
            return redirect(url_for("alerts.subscribe_sent"))
        data = SubscribeRequest(
            email=form.email.data or "",
            name=form.name.data or "",
            language=form.language.data or "",
            topic_ids=form.topics.data or [],
            consent=bool(form.consent.data),
            consent_text=consent,
        )
        found = subscribers.problems(data)
        for name, message in found.items():
            _apply_errors(form, SubscriberError(message, name))
        if not found:
            try:
                subscribers.subscribe(data)
            except SubscriberError as error:
                db.session.rollback()
                subscribers.forget_queued()
                _apply_errors(form, error)
            else:
                db.session.commit()
                subscribers.dispatch_after_commit()
                return redirect(url_for("alerts.subscribe_sent"))
    status = 400 if request.method == "POST" else 200
    return _private(render_template("alerts/subscribe.html", form=form, consent=consent), status)


@bp.route("/subscribe/sent")
def subscribe_sent() -> Response:
    return _private(render_template("alerts/subscribe_sent.html"))


@bp.route("/subscribe/confirm/<token>", methods=["GET", "POST"])
@limiter.limit(_limit, methods=["POST"])
@writes_on_post
def confirm(token: str) -> Response:
    """GET only shows a button: link scanners follow links, they do not press buttons."""
    subscriber = tokens.load_subscriber(token, "confirm")
    if subscriber is None:
        return _invalid_link()
    if subscriber.status == SubscriberStatus.UNSUBSCRIBED:
        return _invalid_link()
    form = ConfirmForm()
    if request.method == "POST" and form.validate_on_submit():
        subscribers.confirm(subscriber)
        db.session.commit()
        return _confirmed(subscriber)
    if subscriber.status == SubscriberStatus.CONFIRMED:
        return _confirmed(subscriber)
    status = 400 if request.method == "POST" else 200
    return _private(render_template("alerts/confirm.html", subscriber=subscriber, form=form), status)


def _confirmed(subscriber: Subscriber) -> Response:
    return _message(
        "You are subscribed",
        "Your subscription is confirmed: alerts on the topics you chose will come to this address.",
        "Every alert has a link to unsubscribe in one click.",
        links=((_preferences_link(subscriber), "Change your preferences"),),
    )


def _preferences_page(subscriber: Subscriber, token: str, form: PreferencesForm | None = None, **forms: object) -> str:
    topics = subscribers.offered_topics()
    retired = [topic for topic in subscriber.topics if not topic.active]
    if form is None:
        form = PreferencesForm(formdata=None, topics=[*topics, *retired], obj=subscriber)
        form.topics.data = [str(topic.id) for topic in subscriber.topics]
    return render_template(
        "alerts/preferences.html",
        subscriber=subscriber,
        token=token,
        form=form,
        resume=forms.get("resume") or ResumeForm(formdata=None),
        delete=forms.get("delete") or DeleteForm(formdata=None),
        consent=subscribers.consent_text(),
        unsubscribe_url=url_for("alerts.unsubscribe", token=tokens.make_token(subscriber, "unsubscribe")),
    )


@bp.route("/subscribe/preferences/<token>", methods=["GET", "POST"])
@writes_on_post
def preferences(token: str) -> Response:
    subscriber = tokens.load_subscriber(token, "preferences")
    if subscriber is None:
        return _invalid_link()
    if request.method == "GET":
        return _private(_preferences_page(subscriber, token))
    retired = [topic for topic in subscriber.topics if not topic.active]
    form = PreferencesForm(topics=[*subscribers.offered_topics(), *retired])
    if form.validate_on_submit():
        try:
            subscribers.update_preferences(subscriber, form.name.data or "", form.language.data or "", form.topics.data)
        except SubscriberError as error:
            db.session.rollback()
            subscriber = tokens.load_subscriber(token, "preferences")
            _apply_errors(form, error)
        else:
            db.session.commit()
            return _message(
                "Your preferences are saved",
                "The next alerts follow your new choices.",
                links=((url_for("alerts.preferences", token=token), "Back to your preferences"),),
            )
    return _private(_preferences_page(subscriber, token, form), 400)


@bp.route("/subscribe/preferences/<token>/resume", methods=["POST"])
@writes_on_post
def resume(token: str) -> Response:
    """Subscribe again from the preferences link, with the consent ticked again."""
    subscriber = tokens.load_subscriber(token, "preferences")
    if subscriber is None:
        return _invalid_link()
    form = ResumeForm()
    if not form.validate_on_submit():
        return _private(_preferences_page(subscriber, token, resume=form), 400)
    if subscriber.status != SubscriberStatus.CONFIRMED:
        subscribers.resume(subscriber)
        db.session.commit()
    return _confirmed(subscriber)


@bp.route("/subscribe/preferences/<token>/export.json")
def export(token: str) -> Response:
    """Everything held about the subscriber, as a JSON download."""
    subscriber = tokens.load_subscriber(token, "preferences")
    if subscriber is None:
        return _invalid_link()
    data = subscribers.export(subscriber)
    response = current_app.response_class(json.dumps(data, ensure_ascii=False, indent=2), mimetype="application/json")
    response.headers["Content-Disposition"] = 'attachment; filename="my-alert-subscription.json"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/subscribe/preferences/<token>/delete", methods=["POST"])
@writes_on_post
def delete(token: str) -> Response:
    subscriber = tokens.load_subscriber(token, "preferences")
    if subscriber is None:
        return _invalid_link()
    form = DeleteForm()
    if not form.validate_on_submit():
        return _private(_preferences_page(subscriber, token, delete=form), 400)
    subscriber_id = subscriber.id
    subscribers.delete(subscriber)
    audit.record("subscribers.self_deleted", None, f"Subscriber {subscriber_id} deleted their data", id=subscriber_id)
    db.session.commit()
    return _message(
        "Your subscription and your data are deleted",
        "We no longer hold your email address, name or choices, and no alert will come to you. "
        "Alerts already sent are counted in their reports without your address.",
        links=((url_for("alerts.subscribe"), "Subscribe again"),),
    )


@bp.route("/unsubscribe/<token>", methods=["GET", "POST"])
@csrf.exempt
@writes_on_post
def unsubscribe(token: str) -> Response:
    """GET: a page with a button.  POST: unsubscribe, RFC 8058 one-click.

    Mail clients post ``List-Unsubscribe=One-Click`` without a CSRF token or cookies;
    the page's own button posts the same way.  The signed token is what authorises it,
    so the view is exempt from CSRF; a second POST answers success again.  A bad token
    answers 400 with no word on the address.
    """
    subscriber = tokens.load_subscriber(token, "unsubscribe")
    if subscriber is None:
        return _invalid_link(400 if request.method == "POST" else 404)
    if request.method == "POST":
        via = "one-click" if request.form.get("List-Unsubscribe") == "One-Click" else "page"
        subscribers.unsubscribe(subscriber, via)
        db.session.commit()
        return _message(
            "You are unsubscribed",
            f"No more alerts will be sent to {subscriber.email}.",
            "Changed your mind? You can subscribe again from your preferences.",
            links=((_preferences_link(subscriber), "Your preferences"),),
        )
    return _private(
        render_template(
            "alerts/unsubscribe.html",
            subscriber=subscriber,
            token=token,
            preferences_url=_preferences_link(subscriber),
        )
    )
