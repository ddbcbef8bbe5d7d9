"""``connect()``: a client of one Populus server, which defines tables."""

from __future__ import annotations

from populus.config import ConnectOptions, resolve_connect_options
from populus.refresh import KeySource
from populus.reserve_loop import Make
from populus.rpc import Connection
from populus.table import Table


class PopulusClient:
    """A client of one server. Nothing is sent until the first call."""

    def __init__(self, options: ConnectOptions) -> None:
        self.options = options
        """Options in force (url, target, token, CA)."""
        self.connection = Connection(options)

    def table(self, name: str, *, key_source: KeySource, make: Make) -> Table:
        """Defines a table: ``key_source`` answers the keys to compute (an
        iterable of key dicts, or a function returning one, called at every
        refresh), ``make(key, ctx)`` computes one and returns its result dict.
        For ``populate(processes=N)`` make must be a module-level function
        (child processes import it by name)."""
        return Table(self.connection, name, key_source, make)

    def close(self) -> None:
        """Closes the channel (the next call opens a new one)."""
        self.connection.close()

    def __enter__(self) -> "PopulusClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(url: str | None = None, token: str | None = None, ca_file: str | None = None) -> PopulusClient:
    """A client of the server at ``url``, else ``POPULUS_URL``, else
    http://127.0.0.1:50051; ``token`` (else ``POPULUS_TOKEN``) is sent as a
    bearer token with every call; ``ca_file`` (else ``POPULUS_CA_FILE``) is the
    PEM CA of an https:// server. Raises InvalidConfigError for a bad option."""
    return PopulusClient(resolve_connect_options(url, token, ca_file))
