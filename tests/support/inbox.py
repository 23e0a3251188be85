"""The mail the platform sends, as an SMTP server receives it."""

from __future__ import annotations

from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message


class Inbox:
    """An aiosmtpd handler keeping what the SMTP server received (`port`: where it listens)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.port = 0

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd handler hook
        message = message_from_bytes(envelope.content)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        return [m for m in self.messages if address in m["X-Envelope-To"]]

    def with_notice(self, notice_id_part: str) -> list[Message]:
        return [m for m in self.messages if notice_id_part in notice_id(m)]


def notice_id(message: Message) -> str:
    """The X-Notice-Id header, decoded: a long one arrives folded, and one too long to fold
    (no spaces) as RFC 2047 encoded words."""
    return "".join(str(make_header(decode_header(message["X-Notice-Id"] or ""))).split())


def notices(inbox: Inbox, application_id: str, suffix: str) -> list[Message]:
    """Mail whose notice id is `<application id>/<suffix>` exactly."""
    return [m for m in inbox.messages if notice_id(m) == f"{application_id}/{suffix}"]


def envelope(message: Message) -> set[str]:
    """The addresses the message was delivered to."""
    return {a.strip() for a in message["X-Envelope-To"].split(",")}


def body(message: Message) -> str:
    return message.get_payload(decode=True).decode()
