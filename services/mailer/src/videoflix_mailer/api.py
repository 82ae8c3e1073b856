"""HTTP routes of the development sink: list, read and clear the received messages.

GET    /messages?to=<address>   newest first
GET    /messages/<id>           one message
GET    /messages/<id>.eml       the raw message as received (envelope headers first)
DELETE /messages                clear
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response

from videoflix_mailer.mailbox import Mailbox
from videoflix_mailer.schemas import ClearedOut, MessageOut

router = APIRouter(prefix="/messages", tags=["dev mail"])


def get_mailbox(request: Request) -> Mailbox:
    mailbox: Mailbox = request.app.state.mailbox
    return mailbox


SinkMailbox = Annotated[Mailbox, Depends(get_mailbox)]
Recipient = Annotated[
    str | None, Query(max_length=320, description="only messages to this address")
]
Limit = Annotated[int, Query(ge=1, le=1000)]


# Plain `def` routes: file I/O runs in the threadpool, never blocking the SMTP server's loop.
@router.get("", response_model=list[MessageOut])
def list_messages(
    mailbox: SinkMailbox, to: Recipient = None, limit: Limit = 100
) -> list[MessageOut]:
    return [MessageOut.of(m) for m in mailbox.list(to=to, limit=limit)]


@router.delete("", response_model=ClearedOut)
def clear_messages(mailbox: SinkMailbox) -> ClearedOut:
    return ClearedOut(deleted=mailbox.clear())


# Declared before `/{message_id}`, which would otherwise take "<id>.eml" as an id.
@router.get("/{message_id}.eml", response_class=Response)
def raw_message(message_id: str, mailbox: SinkMailbox) -> Response:
    raw = mailbox.raw(message_id)
    if raw is None:
        raise HTTPException(status_code=404, detail="No such message.")
    return Response(raw, media_type="message/rfc822")


@router.get("/{message_id}", response_model=MessageOut)
def get_message(message_id: str, mailbox: SinkMailbox) -> MessageOut:
    message = mailbox.get(message_id)
    if message is None:
        raise HTTPException(status_code=404, detail="No such message.")
    return MessageOut.of(message)
