"""Context carried through a request or an event's handling: correlation id and event id (for logs and events)."""

from contextvars import ContextVar

correlation_id_var: ContextVar[str] = ContextVar("correlation_id", default="")
event_id_var: ContextVar[str] = ContextVar("event_id", default="")
