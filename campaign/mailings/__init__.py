from flask import Blueprint

bp = Blueprint("mailings", __name__, url_prefix="/admin")

from campaign.mailings import outbox_routes, report_routes, routes, sending_routes  # noqa: E402, F401
