"""A TCP proxy in front of PostgreSQL, for a test to break the way networks break: connections
that go silent (`freeze`: a dead NAT entry, a hung server, nothing closes) and a database that
cannot be reached at all (`cut`: connections closed, new ones refused), then `restore`."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tests.support.net import free_port


class Proxy:
    def __init__(self, database_url: str) -> None:
        parts = urlsplit(database_url)
        query = dict(parse_qsl(parts.query))
        socket_dir = query.pop("host", None)
        port = int(query.pop("port", None) or parts.port or 5432)
        # Embedded PostgreSQL listens on a Unix socket in a directory (`?host=/dir`).
        self._unix = f"{socket_dir}/.s.PGSQL.{port}" if socket_dir else None
        self._target = (parts.hostname or "localhost", port)
        self.port = free_port()
        user = parts.netloc.rpartition("@")[0]
        self.url = urlunsplit((parts.scheme, f"{user}@127.0.0.1:{self.port}", parts.path,
                               urlencode(query), ""))
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self._unix:
                up_reader, up_writer = await asyncio.open_unix_connection(self._unix)
            else:
                up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        try:
            await asyncio.gather(link.pump(reader, up_writer), link.pump(up_reader, writer))
        finally:
            self._links.discard(link)
            link.close()

    def freeze(self) -> None:
        """The connections open now carry nothing more, and nothing tells either end; new
        connections work."""
        for link in self._links:
            link.frozen = True

    async def cut(self) -> None:
        """Nothing reaches the database: open connections closed, new ones refused."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for link in list(self._links):
            link.close()

    async def restore(self) -> None:
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        await self.cut()


class _Link:
    def __init__(self, *writers: asyncio.StreamWriter) -> None:
        self.writers = writers
        self.frozen = False
        self.closed = asyncio.Event()

    async def pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while (data := await reader.read(65536)) and not self.closed.is_set():
                if self.frozen:
                    await self.closed.wait()  # silence, until the test closes it
                    break
                writer.write(data)
                await writer.drain()
        writer.close()

    def close(self) -> None:
        self.closed.set()
        for writer in self.writers:
            writer.close()
