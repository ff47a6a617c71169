from flask import Blueprint

#: Coordinators' pages.
bp = Blueprint("letters", __name__, url_prefix="/admin/letters")
#: Public pages: letters, the feed, meeting calendars.
public_bp = Blueprint("public", __name__)
#: Coordinators' pages for meetings.
meetings_bp = Blueprint("meetings", __name__, url_prefix="/admin/meetings")

from campaign.letters import meeting_routes, models, public, routes, translation_routes  # noqa: E402, F401
