from flask import Blueprint

bp = Blueprint("contacts", __name__, url_prefix="/admin/contacts")

from campaign.contacts import audience_routes, import_routes, models, routes  # noqa: E402, F401
