"""Context carried through a request or an event's handling: correlation id and event id (for logs and events)."""

from contextvars import ContextVar

correlation_id_var: ContextVar[str] = ContextVar("correlation_id", default="")
event_id_var: ContextVar[str] = ContextVar("event_id", default="")

# Set in the ASGI scope of a HEAD request, which the app serves as the GET of the same path without a body.
HEAD_REQUEST = "cjrh.head"
