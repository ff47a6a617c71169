from flask import Blueprint

bp = Blueprint("mailings", __name__, url_prefix="/admin")

from campaign.mailings import routes  # noqa: E402, F401
