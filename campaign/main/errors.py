"""Error pages: HTML for people; on API paths, problem+json (RFC 9457)."""

from __future__ import annotations

from flask import Flask, Response, render_template
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from campaign.extensions import db
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

    @app.errorhandler(500)
    def _server_error(error: Exception) -> tuple[str, int] | Response:
        db.session.rollback()
        if is_api_request():
            return problem(500, "Something went wrong on our side; the error was logged.")
        message = "Something went wrong on our side. The error was logged; please try again in a moment."
        return render_template("errors/error.html", code=500, title="Server error", message=message), 500
