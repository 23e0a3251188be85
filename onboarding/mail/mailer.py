"""Notices by e-mail: the message a notice becomes, and SMTP delivery over kept-open connections."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from email import quoprimime
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.utils import formatdate

import aiosmtplib

from onboarding.core.config import Settings


# A body that is not ASCII (or has lines too long for SMTP) goes as UTF-8, quoted-printable or
# base64, whichever is shorter (as the default policy's content manager chooses).
_ASCII, _UTF8_QP, _UTF8_BASE64 = Charset("us-ascii"), Charset("utf-8"), Charset("utf-8")
_UTF8_QP.body_encoding = QP


def build_message(
    settings: Settings, notice_id: str, recipients: list[str], subject: str, body: str
) -> Message:
    """The notice as a message. Built with the email package's compat32 API (email.message's
    Message, not EmailMessage): the default policy parses every header it is handed through
    its header registry, which made a message cost ~1 ms to build and as much again to send,
    a fifth of a worker's Python time per lifecycle (bench/README.md); this costs ~0.2 ms."""
    message = Message()
    message["From"] = settings.mail_from
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject if subject.isascii() else Header(subject, "utf-8")
    message["Date"] = formatdate(localtime=False)
    # The same notice always carries the same Message-ID, so a resend after a crash between
    # the SMTP hand-off and marking it sent is recognisable as a duplicate by mail systems.
    digest = hashlib.sha256(notice_id.encode()).hexdigest()[:32]
    message["Message-ID"] = f"<{digest}@openapi-onboarding>"
    message["X-Notice-Id"] = notice_id
    if body.isascii() and all(len(line) <= 900 for line in body.splitlines()):
        charset = _ASCII
    else:
        encoded = body.encode()
        as_qp = len(quoprimime.body_encode(encoded.decode("latin-1")))
        charset = _UTF8_QP if as_qp <= 4 * len(encoded) / 3 else _UTF8_BASE64
    message.set_payload(body, charset)  # with MIME-Version and Content-Type
    return message


# At most this many SMTP connections per worker process: a few, so that a burst of notices is
# not queued behind one slow exchange, without holding a connection per running activity.
MAX_CONNECTIONS = 4
# A connection unused for longer is checked with NOOP before it carries a message: by then the
# server may have dropped it without our noticing (a server that closes it properly is noticed
# at once).
CHECK_AFTER_IDLE_SECONDS = 5.0


class Mailer:
    """Sends notices over SMTP connections kept open between them.

    A connection per notice costs a TCP handshake, the greeting, EHLO (and STARTTLS and login
    where configured) and QUIT, on both sides: more than sending the message itself. Here each
    connection carries one message at a time. One that the server has closed, or that
    fails its NOOP, is replaced before it carries anything. A send that fails closes its
    connection and raises, nothing is resent here: the activity's retry sends the same message
    (same Message-ID) again, on a new connection.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []  # with when each was last used
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)

    async def send(self, message: Message) -> None:
        async with self._slots:
            smtp = await self._reusable() or await self._connect()
            try:
                await smtp.send_message(message)
            except BaseException:
                smtp.close()
                raise
            self._idle.append((smtp, time.monotonic()))

    async def aclose(self) -> None:
        """QUIT every idle connection (the worker is stopping: nothing is being sent)."""
        idle, self._idle = self._idle, []
        for smtp, _ in idle:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await smtp.quit()
            smtp.close()

    async def _reusable(self) -> aiosmtplib.SMTP | None:
        while self._idle:
            smtp, last_used = self._idle.pop()
            if not smtp.is_connected:
                smtp.close()
                continue
            if time.monotonic() - last_used > CHECK_AFTER_IDLE_SECONDS:
                try:
                    await smtp.noop()
                except (aiosmtplib.SMTPException, OSError):
                    smtp.close()
                    continue
                except BaseException:  # cancelled: the connection's state is unknown
                    smtp.close()
                    raise
            return smtp
        return None

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self.settings
        assert s.smtp_host, "sending mail needs SMTP_HOST"
        # As aiosmtplib.send would: STARTTLS and login (when configured) happen on connect.
        smtp = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            start_tls=s.smtp_starttls,
            timeout=s.smtp_timeout_seconds,
        )
        await smtp.connect()
        return smtp
