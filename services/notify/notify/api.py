"""HTTP routes of the notify service: parse, call a use case, shape the response. Each caller sees only their own."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response, status

from common.auth import CurrentPrincipal, Principal, Role, require_roles
from common.service import RuntimeDep, SessionDep
from notify import service
from notify.domain import Status, mask_address
from notify.models import Delivery, WebhookSubscription
from notify.schemas import (
    DeliveryPublic,
    EffectivePreference,
    Inbox,
    InboxMessagePublic,
    Marked,
    Page,
    Preferences,
    PreferenceUpdate,
    ProfilePublic,
    ProfileUpdate,
    Rendered,
    SmsReceipt,
    TemplatePreview,
    TemplatePublic,
    TemplateUpdate,
    UnreadCount,
    WebhookCreate,
    WebhookPublic,
)

Office = Annotated[Principal, Depends(require_roles(Role.OFFICE_ADMIN))]
ReceiptSender = Annotated[Principal, Depends(require_roles(Role.INTEGRATION, Role.OFFICE_ADMIN))]
Limit = Annotated[int, Query(ge=1, le=200)]
DeliveryChannel = Literal["email", "sms", "webhook"]  # the inbox is not a delivery
RecipientParam = Annotated[str | None, Query(
    max_length=120, description="whose settings: yourself (default), 'role:office_admin' or 'institution:<id>'")]

inbox = APIRouter(prefix="/inbox", tags=["inbox"])
feed = APIRouter(prefix="/feed", tags=["public feed"])
settings_router = APIRouter(prefix="/me", tags=["preferences"])
webhooks = APIRouter(prefix="/webhooks", tags=["webhooks"])
deliveries = APIRouter(prefix="/deliveries", tags=["deliveries"])
templates_router = APIRouter(prefix="/templates", tags=["templates"])


# --- inbox ---------------------------------------------------------------------------------------------------------

@inbox.get("", response_model=Inbox)
async def my_inbox(
    session: SessionDep, principal: CurrentPrincipal,
    state: Literal["active", "unread", "archived", "all"] = "active", category: str | None = None,
    limit: Limit = 50, cursor: str | None = None,
) -> Inbox:
    """The caller's inbox (never anyone else's), newest first, with the unread count."""
    items, nxt = await service.list_inbox(session=session, principal=principal, state=state, category=category,
                                          limit=limit, cursor=cursor)
    unread = await service.unread_count(session=session, principal=principal)
    return Inbox(unread=unread, items=items, next_cursor=nxt)


@inbox.get("/unread-count", response_model=UnreadCount)
async def my_unread_count(session: SessionDep, principal: CurrentPrincipal) -> UnreadCount:
    """How many unread messages the caller has (for a badge)."""
    return UnreadCount(unread=await service.unread_count(session=session, principal=principal))


@inbox.post("/read-all", response_model=Marked)
async def mark_all_read(session: SessionDep, principal: CurrentPrincipal, category: str | None = None) -> Marked:
    """Mark all of the caller's unread messages read."""
    return Marked(changed=await service.mark_all_read(session=session, principal=principal, category=category))


@inbox.post("/{message_id}/{action}", response_model=InboxMessagePublic)
async def mark_message(
    message_id: str, action: Literal["read", "unread", "archive", "unarchive"], session: SessionDep,
    principal: CurrentPrincipal,
) -> InboxMessagePublic:
    """Mark one of the caller's messages read, unread, archived or unarchived."""
    return await service.mark_message(session=session, principal=principal, message_id=message_id, action=action)


@feed.get("/certifications", response_model=list[InboxMessagePublic])
async def certification_feed(session: SessionDep, limit: Limit = 50) -> list[InboxMessagePublic]:
    """Public feed of certification announcements, certifications and revocations (no sign-in needed)."""
    return [InboxMessagePublic.model_validate(m) for m in await service.public_feed(session=session, limit=limit)]


# --- preferences and profile -------------------------------------------------------------------------------------

@settings_router.get("/preferences", response_model=Preferences)
async def my_preferences(session: SessionDep, principal: CurrentPrincipal, recipient: RecipientParam = None):
    """Effective preferences per category and channel, with the layer that decided each."""
    who = service.recipient_for(principal, recipient)
    return Preferences(recipient=who, items=await service.effective_preferences(session=session, recipient=who))


@settings_router.put("/preferences/{category}/{channel}", response_model=list[EffectivePreference])
async def set_preference(
    category: str, channel: str, body: PreferenceUpdate, session: SessionDep, principal: CurrentPrincipal,
    recipient: RecipientParam = None,
) -> list[EffectivePreference]:
    """Turn a category ('*' for all) on or off on a channel; critical categories cannot be muted (422)."""
    who = service.recipient_for(principal, recipient)
    await service.set_preference(session=session, recipient=who, category=category, channel=channel,
                                 enabled=body.enabled)
    return await service.effective_preferences(session=session, recipient=who)


@settings_router.get("/profile", response_model=ProfilePublic)
async def my_profile(session: SessionDep, principal: CurrentPrincipal, recipient: RecipientParam = None):
    """The caller's (or an administered inbox's) addresses, locale and quiet hours."""
    who = service.recipient_for(principal, recipient)
    return ProfilePublic.model_validate(await service.get_profile(session=session, recipient=who))


@settings_router.put("/profile", response_model=ProfilePublic)
async def put_profile(
    body: ProfileUpdate, session: SessionDep, principal: CurrentPrincipal, recipient: RecipientParam = None,
) -> ProfilePublic:
    """Set addresses, locale and quiet hours (HH:MM, Asia/Shanghai)."""
    who = service.recipient_for(principal, recipient)
    return ProfilePublic.model_validate(await service.put_profile(session=session, recipient=who, data=body))


# --- webhooks ------------------------------------------------------------------------------------------------------

def _webhook(sub: WebhookSubscription, *, with_secret: bool = False) -> WebhookPublic:
    out = WebhookPublic.model_validate(sub)
    out.secret = sub.secret if with_secret else None
    return out


@webhooks.post("", status_code=status.HTTP_201_CREATED, response_model=WebhookPublic)
async def create_webhook(body: WebhookCreate, session: SessionDep, runtime: RuntimeDep, actor: Office,
                         response: Response):
    """Subscribe a system to signed CloudEvents (office administrators); the secret is shown only now."""
    sub = await service.create_webhook(session=session, data=body, actor=actor,
                                       allow_private=runtime.settings.webhook_allow_private_networks)
    response.headers["Location"] = f"/webhooks/{sub.id}"
    return _webhook(sub, with_secret=True)


@webhooks.get("", response_model=list[WebhookPublic])
async def list_webhooks(session: SessionDep, actor: Office) -> list[WebhookPublic]:
    """Every webhook subscription (secrets never shown again)."""
    return [_webhook(s) for s in await service.list_webhooks(session=session)]


@webhooks.delete("/{webhook_id}", response_model=WebhookPublic)
async def deactivate_webhook(webhook_id: str, session: SessionDep, actor: Office) -> WebhookPublic:
    """Stop a subscription; its history stays."""
    return _webhook(await service.deactivate_webhook(session=session, webhook_id=webhook_id))


# --- deliveries ------------------------------------------------------------------------------------------------------

def _delivery(d: Delivery, viewer: Principal) -> DeliveryPublic:
    out = DeliveryPublic.model_validate(d)
    if not viewer.is_office:
        out.address = mask_address(d.address)
    return out


@deliveries.get("", response_model=Page[DeliveryPublic])
async def list_deliveries(
    session: SessionDep, viewer: CurrentPrincipal, status_: Annotated[Status | None, Query(alias="status")] = None,
    channel: DeliveryChannel | None = None, recipient: str | None = None, event_id: str | None = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> Page[DeliveryPublic]:
    """Deliveries and their status: the office sees all, others those of their own inboxes (addresses masked)."""
    items, nxt = await service.list_deliveries(session=session, viewer=viewer, status=status_, channel=channel,
                                               recipient=recipient, event_id=event_id, limit=limit, cursor=cursor)
    return Page[DeliveryPublic](items=[_delivery(d, viewer) for d in items], next_cursor=nxt)


@deliveries.get("/{delivery_id}", response_model=DeliveryPublic)
async def get_delivery(delivery_id: str, session: SessionDep, viewer: CurrentPrincipal) -> DeliveryPublic:
    """One delivery with its reason and attempts."""
    return _delivery(await service.get_delivery(session=session, viewer=viewer, delivery_id=delivery_id), viewer)


@deliveries.post("/{delivery_id}/replay", response_model=DeliveryPublic)
async def replay_delivery(delivery_id: str, session: SessionDep, runtime: RuntimeDep, actor: Office):
    """Queue a failed or dead delivery again (office administrators)."""
    d = await service.replay_delivery(session=session, stager=runtime.stager, delivery_id=delivery_id, actor=actor)
    return _delivery(d, actor)


@deliveries.post("/sms-receipts", response_model=DeliveryPublic)
async def sms_receipt(body: SmsReceipt, session: SessionDep, runtime: RuntimeDep, actor: ReceiptSender):
    """The SMS provider's delivery receipt (integration accounts): delivered, or dead with the carrier's code.

    The same receipt again (providers resend them; also several at once) answers 200 with the delivery as it is and
    publishes nothing; a receipt contradicting the one applied answers 409.
    """
    d = await service.record_sms_receipt(session=session, stager=runtime.stager, biz_id=body.biz_id,
                                         success=body.success, err_code=body.err_code)
    return _delivery(d, actor)


# --- templates -------------------------------------------------------------------------------------------------------

@templates_router.get("/{event}/{locale}", response_model=TemplatePublic)
async def get_template(event: str, locale: Literal["zh-CN", "en"], session: SessionDep, actor: Office):
    """The template used for an event name and locale."""
    title, body, source = await service.effective_template(session=session, event=event, locale=locale)
    return TemplatePublic(event=event, locale=locale, title=title, body=body, source=source)


@templates_router.put("/{event}/{locale}", response_model=TemplatePublic)
async def put_template(
    event: str, locale: Literal["zh-CN", "en"], body: TemplateUpdate, session: SessionDep, actor: Office,
) -> TemplatePublic:
    """Replace a template (checked in the sandbox first; unsafe templates are refused with 422)."""
    o = await service.put_template(session=session, event=event, locale=locale, title=body.title, body=body.body,
                                   actor=actor)
    return TemplatePublic(event=o.event, locale=o.locale, title=o.title, body=o.body, source="override")


@templates_router.post("/preview", response_model=Rendered)
async def preview_template(body: TemplatePreview, session: SessionDep, actor: Office) -> Rendered:
    """Render a stored template or a draft with sample or given data, without sending anything."""
    r = await service.preview_template(session=session, event=body.event, locale=body.locale, title=body.title,
                                       body=body.body, data=body.data)
    return Rendered(title=r.title, body=r.body)


routers = [inbox, feed, settings_router, webhooks, deliveries, templates_router]
