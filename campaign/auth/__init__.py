from flask import Blueprint

bp = Blueprint("auth", __name__)
users_bp = Blueprint("users", __name__, url_prefix="/admin")

from campaign.auth import admin_routes, routes  # noqa: E402, F401
