"""Error pages: HTML for people; the JSON API answers problem+json."""

from __future__ import annotations

from flask import Flask, render_template
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from campaign.extensions import db


def install_error_handlers(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def _csrf(error: CSRFError) -> tuple[str, int]:
        message = "The form expired or was sent from elsewhere. Go back, reload the page and try again."
        return render_template("errors/error.html", code=400, title="Form expired", message=message), 400

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> tuple[str, int] | HTTPException:
        if error.code is None or error.code < 400:
            return error
        return (
            render_template("errors/error.html", code=error.code, title=error.name, message=error.description),
            error.code,
        )

    @app.errorhandler(500)
    def _server_error(error: Exception) -> tuple[str, int]:
        db.session.rollback()
        message = "Something went wrong on our side. The error was logged; please try again in a moment."
        return render_template("errors/error.html", code=500, title="Server error", message=message), 500
