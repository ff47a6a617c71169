from flask import Blueprint

#: Coordinators' pages.
bp = Blueprint("letters", __name__, url_prefix="/admin/letters")
#: Public pages: letters, the feed, meeting calendars.
public_bp = Blueprint("public", __name__)

from campaign.letters import models, public, routes  # noqa: E402, F401
