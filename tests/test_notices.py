"""Notice templates: every notice exists in Korean and English with the same placeholders; and
their delivery over SMTP connections kept open between notices."""

from __future__ import annotations

import asyncio
import re
from email import message_from_bytes
from email.message import Message

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller

from onboarding.core.config import Settings
from onboarding.domain.notices import TEMPLATES, render
from onboarding.mail import mailer as smtp
from onboarding.mail.mailer import MAX_CONNECTIONS, Mailer, build_message
from tests.support.net import free_port


def placeholders(text: str) -> set[str]:
    # As string.Template reads them: ASCII names, so "$days일" is $days.
    return set(re.findall(r"\$([_a-z][_a-z0-9]*)", text, re.ASCII | re.IGNORECASE))


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_both_languages_take_the_same_placeholders_and_render(name):
    ko, en = TEMPLATES[name]["ko"], TEMPLATES[name]["en"]
    assert placeholders(" ".join(ko)) == placeholders(" ".join(en))
    context = {p: f"<{p}>" for p in placeholders(" ".join(en))}
    for language in ("ko", "en"):
        subject, body = render(name, language, context)
        assert "$" not in subject + body
        assert all(value in subject + body for value in context.values())


def test_a_missing_placeholder_is_an_error_not_a_blank():
    with pytest.raises(KeyError):
        render("api_key_delivery", "en", {"application_id": "x"})


# --- delivery: SMTP connections kept open between notices ---------------------------------------


class Server:
    """An SMTP server of the test's own, that can be restarted on its port, and that tells the
    connections messages came over apart (by the client's address and port)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[tuple[tuple[str, int], Message]] = []
        self.refuse_data = 0  # answer this many DATA commands with 451
        self.refuse_noop = False
        self.controller: Controller | None = None
        self.start()

    def start(self) -> None:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.refuse_data:
            self.refuse_data -= 1
            return "451 try again later"
        self.received.append((session.peer, message_from_bytes(envelope.content)))
        return "250 OK"

    async def handle_NOOP(self, server, session, envelope, arg) -> str:
        return "421 closing this connection" if self.refuse_noop else "250 OK"

    @property
    def connections(self) -> set[tuple[str, int]]:
        return {peer for peer, _ in self.received}

    def subjects(self) -> list[str]:
        return [m["Subject"] for _, m in self.received]


@pytest.fixture
def smtp_server():
    smtp_server = Server()
    yield smtp_server
    smtp_server.stop()


@pytest.fixture
async def mailer(smtp_server):
    mailer = Mailer(Settings(_env_file=None, smtp_host="127.0.0.1", smtp_port=smtp_server.port,
                             smtp_timeout_seconds=5))
    yield mailer
    await mailer.aclose()


def message(mailer: Mailer, n: int) -> Message:
    return build_message(mailer.settings, f"test/{n}", ["dev@example.com"], f"notice {n}", "body")


async def test_notices_one_after_another_share_one_connection(smtp_server, mailer):
    for n in range(3):
        await mailer.send(message(mailer, n))
    assert smtp_server.subjects() == ["notice 0", "notice 1", "notice 2"]
    assert len(smtp_server.connections) == 1


async def test_notices_at_once_take_a_few_connections_at_most(smtp_server, mailer):
    await asyncio.gather(*(mailer.send(message(mailer, n)) for n in range(20)))
    assert sorted(smtp_server.subjects()) == sorted(f"notice {n}" for n in range(20))
    assert 1 <= len(smtp_server.connections) <= MAX_CONNECTIONS


async def test_a_connection_the_server_closed_is_replaced_before_it_carries_a_notice(
        smtp_server, mailer):
    await mailer.send(message(mailer, 1))
    smtp_server.stop()  # closes its connections: the mailer's idle one with them
    smtp_server.start()
    await asyncio.sleep(0.1)
    await mailer.send(message(mailer, 2))
    assert smtp_server.subjects() == ["notice 1", "notice 2"]
    assert len(smtp_server.connections) == 2


async def test_a_connection_idle_for_a_while_that_fails_its_noop_is_replaced(
        smtp_server, mailer, monkeypatch):
    await mailer.send(message(mailer, 1))
    monkeypatch.setattr(smtp, "CHECK_AFTER_IDLE_SECONDS", 0)
    smtp_server.refuse_noop = True
    await mailer.send(message(mailer, 2))
    assert smtp_server.subjects() == ["notice 1", "notice 2"]
    assert len(smtp_server.connections) == 2


async def test_a_failed_send_raises_and_the_next_one_goes_out_on_a_new_connection(
        smtp_server, mailer):
    await mailer.send(message(mailer, 1))
    smtp_server.refuse_data = 1
    with pytest.raises(aiosmtplib.SMTPDataError):
        await mailer.send(message(mailer, 2))  # nothing resent here: the activity retries
    await mailer.send(message(mailer, 2))
    assert smtp_server.subjects() == ["notice 1", "notice 2"]
    assert len(smtp_server.connections) == 2


async def test_closing_the_mailer_quits_its_connections(smtp_server, mailer):
    await mailer.send(message(mailer, 1))
    [(smtp, _)] = mailer._idle
    await mailer.aclose()
    assert not smtp.is_connected and mailer._idle == []
