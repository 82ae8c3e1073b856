"""The development sink's HTTP shapes (the end-to-end suite reads links through them)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from videoflix_mailer.mailbox import StoredMessage


class MessageOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str
    sender: str = Field(serialization_alias="from")
    to: list[str]
    subject: str
    date: str
    text: str
    html: str
    links: list[str]

    @classmethod
    def of(cls, message: StoredMessage) -> MessageOut:
        return cls(
            id=message.id,
            sender=message.sender,
            to=message.to,
            subject=message.subject,
            date=message.date,
            text=message.text,
            html=message.html,
            links=message.links,
        )


class ClearedOut(BaseModel):
    deleted: int
