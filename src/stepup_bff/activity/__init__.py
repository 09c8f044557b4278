"""The security activity log: what happened to a person's account, for them (GET /api/activity, the SPA's Activity
panel) and for operators (`stepup-bff audit verify`).

Events are appended to the durable database (database.url, migration 2), one hash chain per user (`chain`), written
by `ActivityLog` (`log`) from the places where things happen: sign-in, sign-out and every other end of a session (the
SessionManager's end hook), each step of a step-up, and each privileged action a step-up authorized. No event ever
holds a secret: `log` admits only a fixed set of short, fixed-vocabulary detail fields, and the client is described by
its address and a short label of its user agent (`agents`), never its cookies or tokens.
"""

from .agents import agent_label
from .chain import ChainBreak, event_hash, verify_chain
from .log import ActivityLog, Kind, Outcome, PendingEvent

__all__ = ["ActivityLog", "ChainBreak", "Kind", "Outcome", "PendingEvent", "agent_label", "event_hash", "verify_chain"]
