"""Where the running SIP configuration comes from: SIPconfig.xml and Koha's ``sip_*`` tables.

A thin Twisted adapter over :mod:`koha_gateway.config.sipdb` (the mapping) and
:mod:`koha_gateway.db.sipconfig_tables` (the SQL). At start-up :meth:`ConfigSource.initial`
reads the tables in the calling thread; afterwards the tables are read, and the configuration
built and checked, in the database pool, off the reactor thread.
:meth:`ConfigSource.start_polling` reads the tables every ``--sip-config-poll`` seconds and calls
the service's reload when their rows changed (Koha's tables carry no modification time, so the
rows are compared through a digest). A refused edit is reported once, not at every poll.
"""

from __future__ import annotations

from twisted.internet import defer, task
from twisted.logger import Logger

from koha_gateway.config import ConfigError, load_sip_config, sipdb
from koha_gateway.db.engine import DatabaseError, Unavailable
from koha_gateway.db.sipconfig_tables import read_tables

__all__ = ["ConfigSource", "ConfigSourceError", "describe_sources"]

log = Logger(namespace="koha_gateway.service")


class ConfigSourceError(Exception):
    """No usable configuration at start-up; the message says why."""


def describe_sources(config) -> str:
    """`` (from Koha's database: accounts, institutions)``, or nothing for the file alone."""
    if not config.from_database:
        return ""
    return f" (from Koha's database: {', '.join(sorted(config.from_database))})"


class ConfigSource:
    """SIPconfig.xml (``--sip-config``, optional) and Koha's SIP tables in ``db``."""

    def __init__(self, db, options):
        self.db = db
        self.path: str | None = options.get("sip-config") or None
        self.poll_seconds = float(options.get("sip-config-poll") or 0)
        self.fingerprint: str | None = None
        self._file_config = options.get("sip_config")
        self._file_error = options.get("sip_config_error")
        self._loop: task.LoopingCall | None = None

    def initial(self):
        """The configuration at start-up (blocking; before the reactor runs)."""
        try:
            tables = self.db.run_blocking(read_tables, retry=True, readonly=True)
        except Unavailable as exc:
            if self._file_error is not None:
                raise ConfigSourceError(str(self._file_error)) from None
            raise ConfigSourceError(f"cannot reach the database: {exc}") from None
        if not tables.present:
            if self._file_config is not None:
                return self._file_config
            if self._file_error is not None:
                raise ConfigSourceError(str(self._file_error))
            raise ConfigSourceError(
                "--sip-config is required: the database has no SIP configuration tables "
                "(sip_accounts, sip_institutions)"
            )
        try:
            config = sipdb.build_config(self.path, tables)
        except ConfigError as exc:
            raise ConfigSourceError(str(exc)) from None
        self.fingerprint = tables.fingerprint()
        return config

    @defer.inlineCallbacks
    def load(self, running):
        """A new configuration for a reload, read and checked in a database thread.

        Raises ConfigError, OSError or DatabaseError. When the database cannot be read and the
        running configuration came from the file alone, the file alone is read again."""
        try:
            fingerprint, outcome = yield self.db.run(_load, self.path, retry=True, readonly=True)
        except DatabaseError:
            if running.from_database or self.path is None:
                raise
            return load_sip_config(self.path)
        self.fingerprint = fingerprint  # also for a refused edit: it is reported once
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    # -- the poll ---------------------------------------------------------------------------------

    def start_polling(self, reload) -> None:
        """Every ``poll_seconds``: ``reload(tables)`` when the tables' rows changed."""
        if self.poll_seconds <= 0:
            return
        self._loop = task.LoopingCall(self._poll, reload)
        self._loop.start(self.poll_seconds, now=False).addErrback(
            lambda f: log.failure("SIP configuration poll", f)
        )

    def stop_polling(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def _poll(self, reload):
        def check(fingerprint):
            if fingerprint == self.fingerprint:
                return None
            self.fingerprint = fingerprint
            log.info("Koha's SIP configuration tables changed; reloading")
            return reload()

        return (
            self.db.run(_fingerprint, retry=True, readonly=True)
            .addCallback(check)
            .addErrback(
                lambda f: log.warn(
                    "SIP configuration tables not re-read: {error}", error=f.getErrorMessage()
                )
            )
        )


def _fingerprint(txn) -> str | None:
    tables = read_tables(txn)
    return tables.fingerprint() if tables.present else None


def _load(txn, path: str | None):
    """In a database thread: ``(fingerprint, SIPConfig or the ConfigError/OSError)``."""
    tables = read_tables(txn)
    try:
        if not tables.present:
            if path is None:
                raise ConfigError(
                    "the database no longer has the SIP configuration tables and no "
                    "SIPconfig.xml was given",
                    sipdb.DATABASE_SOURCE,
                )
            return None, load_sip_config(path)
        return tables.fingerprint(), sipdb.build_config(path, tables)
    except (ConfigError, OSError) as exc:
        return (tables.fingerprint() if tables.present else None), exc
