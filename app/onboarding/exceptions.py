"""Conflicts of the onboarding steps with the business's platform, each naming the way out."""

from app.errors import Conflict


class PlatformInUse(Conflict):
    """The business already feeds another platform: one live target per business, or the same bank account
    would be fed into two ledgers and counted twice."""

    code = "platform_in_use"


class NotForThisPlatform(Conflict):
    """The step belongs to another platform's onboarding flow (a link for Sage, a code for Xero, …)."""

    code = "not_for_this_platform"


class NotAuthorized(Conflict):
    """The SMB has yet to sign in to the platform and allow the connection."""

    code = "not_authorized"
