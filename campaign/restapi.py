"""The JSON API's shared machinery: bearer tokens, problem details, pages, the spec.

Every domain's ``api.py`` defines a ``flask_smorest.Blueprint``; ``install_api``
registers them under ``/api/v1`` and serves the OpenAPI 3.1 document generated
from them at ``/api/v1/openapi.json``.  The API authenticates by bearer token only:
the session cookie is ignored on ``/api/`` paths, so CSRF does not apply there.
"""

from __future__ import annotations

import http
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import marshmallow as ma
import sqlalchemy as sa
from flask import Flask, Response, current_app, json, render_template, request
from flask_login import current_user
from flask_smorest import Api, Blueprint
from flask_smorest.utils import prepare_response
from werkzeug.exceptions import HTTPException

from campaign.extensions import csrf, db, login_manager

F = TypeVar("F", bound=Callable[..., Any])
PREFIX = "/api/v1"
PROBLEM = "application/problem+json"
MAX_PER_PAGE = 100


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details."""

    type = ma.fields.String(dump_default="about:blank")
    title = ma.fields.String(required=True)
    status = ma.fields.Integer(required=True)
    detail = ma.fields.String()
    errors = ma.fields.Dict(metadata={"description": "Field-by-field validation messages"})


class JsonApi(Api):
    """flask-smorest with problem+json errors, and error pages left to the app."""

    ERROR_SCHEMA = ProblemSchema

    def _register_error_handlers(self) -> None:
        """The app's own handler answers problem+json on API paths (``install_api``)."""

    def _register_responses(self) -> None:
        for status in http.HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            content_type = self.DEFAULT_RESPONSE_CONTENT_TYPE
            if status >= 400:
                response["schema"], content_type = self.ERROR_SCHEMA, PROBLEM
            prepare_response(response, self.spec, content_type)
            self.spec.components.response(status.name, response, lazy=True)
        response = {"description": "Default error response", "schema": self.ERROR_SCHEMA}
        prepare_response(response, self.spec, PROBLEM)
        self.spec.components.response("DEFAULT_ERROR", response, lazy=True)


#: A name, a title: one line, no control character (PostgreSQL stores no NUL; CR and LF reach mail headers).
single_line = ma.validate.Regexp(r"^[^\x00-\x1f\x7f]*$", error="Must be a single line.")


def is_api_request() -> bool:
    return request.path == PREFIX or request.path.startswith(PREFIX + "/")


def problem(status: int, detail: str | None = None, errors: Any = None, headers: dict | None = None) -> Response:
    body: dict[str, Any] = {"type": "about:blank", "title": http.HTTPStatus(status).phrase, "status": status}
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = errors
    response = current_app.response_class(json.dumps(body), status=status, mimetype=PROBLEM)
    response.headers.update(headers or {})
    return response


def refused(exc: Exception, status: int = 409) -> Response:
    """A service's refusal as a problem: the transaction rolled back, ``detail`` the service's words."""
    db.session.rollback()
    return problem(status, str(exc))


def http_problem(error: HTTPException) -> Response:
    data = getattr(error, "data", None) or {}
    headers = dict(error.get_headers())
    headers.pop("Content-Type", None)
    return problem(error.code or 500, error.description, data.get("messages"), headers)


def api_roles(*roles: str) -> Callable[[F], F]:
    """Bearer token of a user with one of ``roles`` (any role when none is given)."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                return problem(
                    401,
                    "Send a valid API token: Authorization: Bearer <token>.",
                    headers={"WWW-Authenticate": 'Bearer realm="demarche"'},
                )
            if roles and current_user.role not in roles:
                return problem(403, "Your role may not use this resource.")
            return _unreadable_body(view) or view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorator


def takes(*media_types: str) -> Callable[[F], F]:
    """An operation whose body is not JSON: ``media_types`` are the ones it reads."""

    def decorator(view: F) -> F:
        view.request_media_types = media_types  # type: ignore[attr-defined]
        return view

    return decorator


def _unreadable_body(view: Callable[..., Any]) -> Response | None:
    """A 415 for a body the operation cannot read, rather than a 422 saying that every field is
    missing (as a JSON body sent as ``text/plain`` would otherwise get)."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return None
    if not request.content_length and "chunked" not in request.headers.get("Transfer-Encoding", "").lower():
        return None
    media_types = getattr(view, "request_media_types", ("application/json",))
    if request.mimetype in media_types or ("application/json" in media_types and request.is_json):
        return None
    return problem(415, f"Send the body with Content-Type: {' or '.join(media_types)}.")


def documents(blp: Blueprint, *statuses: int) -> Callable[[F], F]:
    """Document the problem responses an operation can give, besides 401 and 403."""

    def decorator(view: F) -> F:
        for status in (401, 403, *statuses):
            view = blp.alt_response(status, response=http.HTTPStatus(status).name)(view)
        return view

    return decorator


class PageArgs(ma.Schema):
    page = ma.fields.Integer(load_default=1, validate=ma.validate.Range(min=1, max=1_000_000))
    per_page = ma.fields.Integer(load_default=50, validate=ma.validate.Range(min=1, max=MAX_PER_PAGE))


_page_schemas: dict[type[ma.Schema], type[ma.Schema]] = {}


def page_of(item: type[ma.Schema]) -> type[ma.Schema]:
    """The schema of a list: ``{"items": [...], "page", "per_page", "total"}``."""
    if item not in _page_schemas:
        name = item.__name__.removesuffix("Schema") + "PageSchema"
        _page_schemas[item] = type(
            name,
            (ma.Schema,),
            {
                "items": ma.fields.List(ma.fields.Nested(item), required=True),
                "page": ma.fields.Integer(required=True),
                "per_page": ma.fields.Integer(required=True),
                "total": ma.fields.Integer(required=True),
            },
        )
    return _page_schemas[item]


def paginate(query: sa.Select, args: dict[str, int]) -> dict[str, Any]:
    page = db.paginate(query, page=args["page"], per_page=args["per_page"], error_out=False, count=True)
    return {"items": page.items, "page": args["page"], "per_page": args["per_page"], "total": page.total}


def _user_from_bearer(req: Any) -> Any:
    if not is_api_request():
        return None
    scheme, _, token = req.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    from campaign.auth.tokens import user_for_token

    return user_for_token(token.strip())


def _blueprints() -> list[Blueprint]:
    from campaign.alerts.api import blp as alerts_api
    from campaign.alerts.subscriber_api import blp as subscribers_api
    from campaign.auth.api import blp as auth_api
    from campaign.contacts.api import blp as contacts_api
    from campaign.letters.api import blp as letters_api
    from campaign.mailings.api import blp as mailings_api
    from campaign.signatures.api import blp as signatures_api

    return [auth_api, letters_api, contacts_api, signatures_api, mailings_api, subscribers_api, alerts_api]


def install_api(app: Flask) -> None:
    app.config.update(
        API_TITLE="Demarche API",
        API_VERSION="v1",
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX=PREFIX,
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={
            "security": [{"bearerAuth": []}],
            "servers": [{"url": "/"}],
            "info": {
                "description": "Bearer tokens come from `flask tokens create EMAIL` or the account page. "
                "Errors are RFC 9457 problem details; lists are "
                '`{"items": [...], "page": 1, "per_page": 50, "total": 193}`.'
            },
        },
    )
    api = JsonApi(app)
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    for blueprint in _blueprints():
        csrf.exempt(blueprint)
        api.register_blueprint(blueprint)
    app.extensions["api"] = api
    login_manager.request_loader(_user_from_bearer)

    @app.route("/api")
    def api_docs() -> str:
        return render_template("api/docs.html", spec=api.spec.to_dict())
