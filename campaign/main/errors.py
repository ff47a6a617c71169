"""Error pages: HTML for people; on API paths, problem+json (RFC 9457)."""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, make_response, render_template
from flask_limiter import RateLimitExceeded
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from campaign.extensions import db, limiter
from campaign.restapi import http_problem, is_api_request, problem


def install_error_handlers(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def _csrf(error: CSRFError) -> tuple[str, int]:
        message = "The form expired or was sent from elsewhere. Go back, reload the page and try again."
        return render_template("errors/error.html", code=400, title="Form expired", message=message), 400

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> tuple[str, int] | HTTPException | Response:
        if error.code is None or error.code < 400:
            return error
        if is_api_request():
            return http_problem(error)
        return (
            render_template("errors/error.html", code=error.code, title=error.name, message=error.description),
            error.code,
        )

    @app.errorhandler(RateLimitExceeded)
    def _too_many(error: RateLimitExceeded) -> Response:
        seconds = _retry_after()
        if is_api_request():
            response = http_problem(error)
        else:
            wait = f"in {seconds} second{'' if seconds == 1 else 's'}" if seconds else "in a minute"
            message = (
                f"Too many attempts from your address: nothing was recorded. Try again {wait}; "
                "your browser's Back button returns to the form with what you typed."
            )
            page = render_template("errors/error.html", code=429, title="Too many attempts", message=message)
            response = make_response(page, 429)
        if seconds is not None:
            response.headers["Retry-After"] = str(seconds)
        return response

    @app.errorhandler(500)
    def _server_error(error: Exception) -> tuple[str, int] | Response:
        db.session.rollback()
        if is_api_request():
            return problem(500, "Something went wrong on our side; the error was logged.")
        message = "Something went wrong on our side. The error was logged; please try again in a moment."
        return render_template("errors/error.html", code=500, title="Server error", message=message), 500


def _retry_after() -> int | None:
    """Seconds until the limit that refused this request lets the client in again; None when
    the limit's store cannot say (the refusal stands, without the hint)."""
    breached = limiter.current_limit
    if breached is None:
        return None
    try:
        reset_at = breached.reset_at
    except Exception:
        logging.getLogger(__name__).warning("the rate limit store did not say when the limit resets", exc_info=True)
        return None
    return max(1, int(reset_at - time.time()))
