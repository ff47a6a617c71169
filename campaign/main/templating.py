"""Template globals and filters."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Flask

from campaign.admin.services import get_settings
from campaign.auth.services import country_name


def format_datetime(value: datetime | None, fmt: str = "%d %b %Y, %H:%M UTC") -> str:
    return value.strftime(fmt) if value else ""


def install_template_helpers(app: Flask) -> None:
    app.jinja_env.filters["datetime"] = format_datetime
    app.jinja_env.filters["country"] = country_name

    @app.context_processor
    def _globals() -> dict[str, Any]:
        return {"coalition": get_settings()}
