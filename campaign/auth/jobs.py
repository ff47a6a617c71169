"""Background jobs of the auth domain: password links asked for on the "forgot password" page."""

from __future__ import annotations

import logging

from flask import current_app

from campaign.auth import services
from campaign.mailings.notices import send_template
from campaign.queue import Job, job

log = logging.getLogger(__name__)


@job(services.PASSWORD_LINK_JOB, queue="high")
def send_password_link(row: Job, email: str) -> None:
    """Mail a reset link when ``email`` belongs to an active account, else nothing.

    The request that asked only scheduled this job (``services.request_password_link``),
    the same for every address, so it cannot tell whether the account exists.
    """
    user = services.get_user_by_email(email)
    if user is None or not user.active:
        row.message = "no active account with that address: nothing sent"
        log.info("job %s: no active account for the password link asked for", row.id)
        return
    token = services.password_token(user, "reset")
    # Built without a request (this runs in a worker), on SITE_URL like every link in an email.
    path = current_app.url_map.bind("localhost").build("auth.reset_password", {"token": token})
    send_template(
        user.email, "Reset your password", "password_reset", user=user, link=current_app.config["SITE_URL"] + path
    )
    row.message = "link sent"
