"""A local SMTP server that keeps every message in a Maildir: the dev stack's mailbox.

The dev stack points the worker at it, so an evaluator reads the notices and the delivered API
keys in `.data/mail/` (any mail reader opens a Maildir; `make mail` lists them).
"""

from __future__ import annotations

import mailbox
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox


def start_mail_sink(maildir: Path, host: str = "127.0.0.1", port: int = 1025) -> Controller:
    maildir.parent.mkdir(parents=True, exist_ok=True)
    mailbox.Maildir(maildir, create=True)  # new/, cur/, tmp/
    controller = Controller(Mailbox(str(maildir)), hostname=host, port=port)
    controller.start()
    return controller
