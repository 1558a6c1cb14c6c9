"""The gateway service: one SIP2 listener per ``<service>`` plus the shared state they serve.

Shape of Twisted's ``mail/tap.py``: a ``MultiService`` whose children are one
``StreamServerEndpointService`` per configured port, all sharing one :class:`Gateway` (the
SIPconfig.xml accounts and institutions, the database pool, the authenticator and the ACS).

SIGHUP re-reads SIPconfig.xml and the TLS certificates without dropping a connection: new
connections and new logins see the new accounts, institutions and policies; a broken new file is
refused with a log line and the old configuration stays in force. Listener addresses and
transports cannot change without a restart (a warning says so). Unless ``--log-level`` was given,
a reload also reads the SIP log level of Koha's log4perl.conf again (:func:`_log_level`).

Where the database has Koha's SIP configuration tables (Koha bug 37893) the configuration comes
from them as Koha takes it, and an edit there is applied like a SIGHUP reload
(:mod:`koha_gateway.configsource`).
"""

from __future__ import annotations

import signal
from datetime import timedelta
from typing import NamedTuple

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet import defer, task
from twisted.logger import Logger

from koha_gateway import clock as clock_mod
from koha_gateway import workers
from koha_gateway.acs.context import RequestContext
from koha_gateway.acs.dispatch import ACS
from koha_gateway.auth.authenticator import Authenticator
from koha_gateway.config import ConfigError, log4perl
from koha_gateway.configsource import ConfigSource, ConfigSourceError, describe_sources
from koha_gateway.db import koha, schema
from koha_gateway.db.engine import Database, DatabaseError, SerializationFailure, Unavailable
from koha_gateway.ils import journal, reference
from koha_gateway.ils import sysprefs as sysprefs_mod
from koha_gateway.ils.circulation import branch_codes
from koha_gateway.ils.context import AccountOptions, staff_borrowernumber
from koha_gateway.protocol import SIPFactory
from koha_gateway.sip2.output import OutputPolicy

log = Logger(namespace="koha_gateway.service")

#: The hourly purge forgets journal rows older than this: those of terminals that stopped
#: writing (each write of a terminal deletes its rows older than the retry window).
JOURNAL_HOURS = 24


class _AccountState(NamedTuple):
    """What every connection and request of one SIP account shares (Gateway._account_state)."""

    account: object
    institution: object
    sysprefs: object
    options: AccountOptions
    output: OutputPolicy


#: The shortest interval between two reads of the system preferences.
SYSPREFS_MIN_SECONDS = 1.0
#: How often a request that lost a race (see Gateway.apply) is run again.
RACE_RETRIES = 3


class StartupError(Exception):
    """The gateway cannot start; the message says why and what to do."""


class Gateway:
    """What every connection shares; swapped atomically on reload."""

    def __init__(self, config, db, auth, db_sysprefs: dict[str, str], clock=None):
        self.config = config
        self.clock = clock if clock is not None else clock_mod.default()
        self.db = db
        self.auth = auth
        self.acs = ACS()
        self.connections: set = set()
        self._db_sysprefs = db_sysprefs
        self._accounts: dict[int, _AccountState] = {}
        # What start-up found of Koha's schema (version, optional columns of newer Koha).
        self.koha_schema: koha.KohaSchema = koha.DEFAULT_SCHEMA
        # Branches, item types, categories, rules, calendars, currency, staff patrons
        # (ils.reference); None: read per request (--reference-max-age 0).
        self.reference: reference.ReferenceCache | None = None

    def set_config(self, config, db_sysprefs: dict[str, str] | None = None):
        self.config = config
        if db_sysprefs is not None:
            self._db_sysprefs = db_sysprefs
        self._accounts = {}

    def _account_state(self, account) -> _AccountState:
        """What every request of ``account`` shares, built once per account and configuration
        (``set_config`` forgets it).

        Keyed by the account object: a connection logged in before a reload keeps the account
        it logged in with, and gets that account's overrides and options."""
        state = self._accounts.get(id(account))
        if state is None or state.account is not account:
            prefs = sysprefs_mod.Sysprefs(self._db_sysprefs).with_overrides(
                self.config.syspref_overrides, account.syspref_overrides
            )
            state = _AccountState(
                account,
                self.config.institutions[account.institution],
                prefs,
                AccountOptions.from_account(account),
                OutputPolicy.from_account(account),
            )
            self._accounts[id(account)] = state
        return state

    def sysprefs_for(self, account):
        """Database values, then SIPconfig.xml's global overrides, then the account's."""
        return self._account_state(account).sysprefs

    def output_policy(self, account) -> OutputPolicy:
        """How answers to ``account`` are written (its ``<login>`` output options)."""
        return self._account_state(account).output

    def context(self, account, session, peer: str) -> RequestContext:
        _, institution, prefs, options, _ = self._account_state(account)
        return RequestContext(
            account,
            institution,
            prefs,
            self.clock.now(),
            session.protocol_version,
            staff_userid=account.id,
            peer=peer,
            options=options,
        )

    def apply(self, ctx: RequestContext, msg, raw: bytes, check=None) -> defer.Deferred:
        """Run the ACS for ``msg`` in one transaction; a resent request comes from the journal
        (``ils.journal``). Only a lost race is run again: two copies of one request writing its
        journal row at once, or a serialization failure (nothing was written).
        ``check`` (an ``auth.authenticator.PatronCheck``) decides the patron password first,
        in the same transaction, and sets ``ctx.password_ok``; when it cannot, the transaction
        fails with ``auth.authenticator.SlowPath`` before the message is handled.
        A message that changes nothing is tried inline first (SQLite: on this thread,
        ``Database.run``)."""
        return self.db.run(
            self._attempt, ctx, msg, raw, check, inline=msg.code not in journal.MUTATING
        ).addErrback(self._again, ctx, msg, raw, check, RACE_RETRIES)

    def _attempt(self, txn, ctx: RequestContext, msg, raw: bytes, check=None):
        del ctx.log[:]  # what a rolled-back attempt noted did not happen
        if check is not None:
            # Before the journal: a resend answered from it has its password checked too.
            ctx.password_ok = check.decide(txn)
        return journal.handle(txn, ctx, msg, raw, self.acs.handle)

    def _again(self, failure, ctx: RequestContext, msg, raw: bytes, check, left: int):
        failure.trap(journal.JournalRace, SerializationFailure)
        d = self.db.run(self._attempt, ctx, msg, raw, check)
        return d.addErrback(self._again, ctx, msg, raw, check, left - 1) if left > 1 else d

    @staticmethod
    def is_unavailable(failure) -> bool:
        return failure.check(Unavailable) is not None


def _reference_max_age(options, config=None) -> float:
    """``--reference-max-age`` in seconds; when not given, ``reference_max_age`` of
    ``config``'s ``<server-params>``; else the default."""
    max_age = options.get("reference-max-age")
    if max_age is None and config is not None:
        max_age = getattr(config.server_params, "reference_max_age", None)
    return reference.DEFAULT_MAX_AGE if max_age is None else float(max_age)


def _log_level(options) -> log4perl.SipLevel:
    """``--log-level``; when not given, the ``sip`` level of the log4perl.conf that
    koha-conf.xml's ``<log4perl_conf>`` names (read anew at each call); else ``info``."""
    given = options.get("log-level")
    if given is not None:
        return log4perl.SipLevel(given, "--log-level")
    koha_conf = options.get("koha_conf")
    path = getattr(koha_conf, "log4perl_conf", None)
    if path is None:
        return log4perl.SipLevel(log4perl.DEFAULT_LEVEL, "default; no <log4perl_conf>")
    return log4perl.read_sip_level(path)


def _startup_checks(txn, config):
    """Schema version, Koha's tables and columns (a :class:`koha.KohaSchema`, or the
    :class:`koha.SchemaError` naming what is missing), system preferences, and the warnings
    Koha 25.11 gives at start."""
    version = schema.current_version(txn)
    try:
        koha_schema = koha.check(txn)
    except koha.SchemaError as exc:
        koha_schema = exc
    prefs = sysprefs_mod.load(txn) if version else {}
    branches = branch_codes(txn) if version else set()
    warnings = []
    for inst in config.institutions.values():
        if version and inst.id not in branches:
            warnings.append(
                f"{config.where(inst)}: institution {inst.id!r} is not a branchcode in the database"
            )
    for account in config.accounts.values():
        if version and staff_borrowernumber(txn, account.id, fresh=True) is None:
            warnings.append(
                f"{config.where(account)}: account {account.id!r} has no patron "
                "with that userid in the database; it cannot log in"
            )
    return version, koha_schema, prefs, warnings


class GatewayService(MultiService):
    """The twistd service: listeners, the authenticator's thread pools, reload on SIGHUP."""

    def __init__(self, gateway: Gateway, options):
        super().__init__()
        self.gateway = gateway
        self.options = options
        self.listeners: dict = {}
        self.adopted: dict = {}  # worker: endpoints on the sockets inherited from the master
        self.sockets: dict = {}  # master with --workers: the sockets it shares
        self._log_observers: list = []
        # The level of --sip-log in force and where it came from.
        self.log_level = _log_level(options)
        self._purge = None
        self._prefs = None
        self._reference = None
        # The bound in force (--reference-max-age, else <server-params>, else the default).
        self.reference_max_age = _reference_max_age(options)
        self.config_source = None
        self._reload_lock = defer.DeferredLock()

    @classmethod
    def from_options(cls, options, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        try:
            wall_clock = clock_mod.default()
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        koha_conf = options.get("koha_conf")
        try:
            db = Database.from_url(options["database"], max_connections=options.get("db-pool-size"))
        except (ValueError, Unavailable) as exc:
            raise StartupError(str(exc)) from None
        source = ConfigSource(db, options)
        try:
            config = source.initial()
        except ConfigSourceError as exc:
            raise StartupError(str(exc)) from None
        try:
            version, koha_schema, prefs, warnings = db.run_blocking(_startup_checks, config)
        except Unavailable as exc:
            raise StartupError(f"cannot reach the database: {exc}") from None
        if version < schema.LATEST:
            found = (
                f"the database schema is at version {version}"
                if version
                else "the database has no koha-gateway tables yet"
            )
            raise StartupError(
                f"{found}, this gateway needs schema version {schema.LATEST}: run "
                "'koha-gateway-admin init' with the same --koha-conf or --database"
            )
        if isinstance(koha_schema, koha.SchemaError):
            raise StartupError(
                "the database lacks Koha tables or columns that koha-gateway uses (is it a "
                "Koha database of a supported version?): " + ", ".join(koha_schema.missing)
            )
        ldap = ldap_config = None
        if koha_conf is not None and koha_conf.use_ldap and koha_conf.ldap is not None:
            from koha_gateway.auth.ldap import LdapDirectory

            ldap_config = koha_conf.ldap
            ldap = LdapDirectory(ldap_config)
        auth = Authenticator(
            db, reactor=reactor, clock=wall_clock, ldap=ldap, ldap_config=ldap_config
        )
        gateway = Gateway(config, db, auth, prefs, clock=wall_clock)
        gateway.koha_schema = koha_schema
        koha.remember(db.engine, koha_schema)
        max_age = _reference_max_age(options, config)
        if max_age > 0:
            gateway.reference = reference.install(db.engine, reference.ReferenceCache(max_age))
        service = cls(gateway, options)
        service.reference_max_age = max_age
        service.config_source = source
        service.startup_warnings = (
            list(config.warnings) + warnings + list(service.log_level.warnings)
        )
        count = options.get("workers") or getattr(config.server_params, "workers", None) or 1
        try:
            service.adopted = workers.adopt_listeners(reactor, options.get("adopt-listeners"))
        except ValueError as exc:
            raise StartupError(f"--adopt-listeners: {exc}") from None
        if count > 1 and not service.adopted and not options.get("check-config"):
            try:
                service.sockets = workers.listening_sockets(config.services)
            except OSError as exc:
                raise StartupError(f"cannot listen: {exc}") from None
        for service_config in config.services:
            service.add_listener(reactor, service_config)
        if options.get("admin-port") and not service.adopted and not options.get("check-config"):
            from koha_gateway import admin_http

            admin_http.install(service, options["admin-port"], options["admin-interface"], reactor)
        if service.sockets:
            argv = getattr(options, "argv", [])
            workers.spawn_workers(
                count - 1, service.sockets, argv, reactor=reactor
            ).setServiceParent(service)
        elif service.adopted:
            workers.watch_master(reactor)
        return service

    def add_listener(self, reactor, service_config):
        from koha_gateway.listeners import Listener

        factory = SIPFactory(self.gateway, service_config, reactor)
        try:
            listener = Listener(reactor, service_config, factory, self.gateway.config.server_params)
        except Exception as exc:
            raise StartupError(f"{self.gateway.config.where(service_config)}: {exc}") from None
        listener.sip_factory = factory
        spec = service_config.address.spec
        endpoint = listener.endpoint
        if spec in self.adopted:
            endpoint = self.adopted[spec]
        elif spec in self.sockets:
            sock = self.sockets[spec]
            endpoint = workers.adopted_endpoint(reactor, sock.fileno(), sock.family)
        child = StreamServerEndpointService(endpoint, listener.factory)
        child._raiseSynchronously = True
        name = f"sip2:{service_config.address.spec}"
        child.setName(name)
        child.setServiceParent(self)
        self.listeners[name] = listener

    def _database_line(self) -> str:
        found = self.gateway.koha_schema
        if found.koha_database:
            what = f"Koha database, Koha version {found.version_text or 'unknown'}"
        else:
            what = "koha-gateway's own database"
        optional = ", ".join(
            f"{table}.{column} {'present' if getattr(found, attr) else 'absent'}"
            for (table, column), attr in koha.OPTIONAL_COLUMNS.items()
        )
        return f"{self.gateway.db.url.redacted()}: {what}; {optional}"

    def report_check(self):
        for warning in self.startup_warnings:
            print(f"warning: {warning}")
        print(self._database_line())
        config = self.gateway.config
        print(
            f"{config.path}: {len(config.services)} listeners, {len(config.accounts)} accounts, "
            f"{len(config.institutions)} institutions: OK{describe_sources(config)}"
        )
        print(f"SIP log level {self.log_level.level} ({self.log_level.source})")

    # -- lifecycle ------------------------------------------------------------------------------

    def startService(self):
        from koha_gateway import logs

        self._log_observers = logs.install(
            self.options.get("sip-log"),
            self.options.get("error-log"),
            self.log_level.level,
            self.options.get("log-format") or "koha",
        )
        for warning in self.startup_warnings:
            log.warn("{warning}", warning=warning)
        log.info(
            "SIP log level {sip_level} ({source})",
            sip_level=self.log_level.level,
            source=self.log_level.source,
        )
        log.info("database {line}", line=self._database_line())
        if self.gateway.config.from_database:
            log.info("SIP configuration{sources}", sources=describe_sources(self.gateway.config))
        ignored = getattr(self.gateway.config.server_params, "ignored", {}) or {}
        if ignored:
            log.info(
                "server-params accepted but not used (Net::Server process options): {names}",
                names=", ".join(sorted(ignored)),
            )
        self.gateway.auth.start()
        self._purge = task.LoopingCall(self._purge_journal)
        self._purge.start(3600, now=True).addErrback(lambda f: log.failure("journal purge", f))
        self._start_refresh_loops()
        if self.config_source is not None:
            self.config_source.start_polling(self.reload)
        try:
            signal.signal(signal.SIGHUP, self._on_sighup)
        except ValueError:  # not the main thread (embedded use)
            pass
        super().startService()
        for name in self.listeners:
            log.info("listening: {name}", name=name)

    @defer.inlineCallbacks
    def stopService(self):
        yield super().stopService()
        for loop in (self._purge, self._prefs, self._reference):
            if loop is not None and loop.running:
                loop.stop()
        if self.config_source is not None:
            self.config_source.stop_polling()
        self.gateway.auth.stop()
        self.gateway.db.close()
        from koha_gateway import logs

        logs.uninstall(self._log_observers)

    def _start_refresh_loops(self) -> None:
        """The background reads of the system preferences and checks of the reference data,
        at the intervals of the bound in force."""
        self._prefs = task.LoopingCall(self._refresh_sysprefs)
        self._prefs.start(self.sysprefs_seconds, now=False).addErrback(
            lambda f: log.failure("system preferences refresh", f)
        )
        if self.gateway.reference is not None:
            self._reference = task.LoopingCall(self._refresh_reference)
            self._reference.start(self.gateway.reference.max_age / 2, now=False).addErrback(
                lambda f: log.failure("reference data check", f)
            )

    def _apply_reference_max_age(self, config) -> None:
        """A reload: ``reference_max_age`` of the new ``<server-params>`` in force, unless
        ``--reference-max-age`` was given. The cache is made, changed or dropped; the
        background loops restart with the new intervals. A transaction running meanwhile
        keeps what it already read (snapshots are immutable)."""
        max_age = _reference_max_age(self.options, config)
        if max_age == self.reference_max_age:
            return
        gateway = self.gateway
        engine = gateway.db.engine
        self.reference_max_age = max_age
        if max_age == 0:
            reference.uninstall(engine)
            gateway.reference = None
        elif gateway.reference is None:
            gateway.reference = reference.install(engine, reference.ReferenceCache(max_age))
        else:
            gateway.reference.max_age = max_age  # read once per check: no lock needed
        if self.running:
            for loop in (self._prefs, self._reference):
                if loop is not None and loop.running:
                    loop.stop()
            self._prefs = self._reference = None
            self._start_refresh_loops()
        log.info(
            "reference data: {what}",
            what=f"checked for changes at most every {max_age:g} s"
            if max_age
            else "read per request (reference_max_age 0)",
        )

    @property
    def sysprefs_seconds(self) -> float:
        """The system preferences are re-read as often as reference data is checked
        (``--reference-max-age``, at least every second)."""
        return max(SYSPREFS_MIN_SECONDS, self.reference_max_age)

    def _refresh_sysprefs(self):
        """Koha re-reads system preferences per connection; here every ``sysprefs_seconds``."""

        def apply(prefs):
            if prefs != self.gateway._db_sysprefs:
                self.gateway.set_config(self.gateway.config, prefs)
                log.info("system preferences changed in the database; now in force")

        return (
            self.gateway.db.run(sysprefs_mod.load, retry=True, readonly=True)
            .addCallback(apply)
            .addErrback(
                lambda f: log.warn(
                    "system preferences not re-read: {error}", error=f.getErrorMessage()
                )
            )
        )

    def _refresh_reference(self):
        """Check the reference data in the background, so that requests seldom have to
        (``ils.reference``); a failure is left to the next request's own check."""
        return self.gateway.db.run(
            self.gateway.reference.refresh, retry=True, readonly=True
        ).addErrback(
            lambda f: log.debug("reference data not checked: {error}", error=f.getErrorMessage())
        )

    def _purge_journal(self):
        before = (self.gateway.clock.now() - timedelta(hours=JOURNAL_HOURS)).strftime(
            "%Y-%m-%d %H:%M:%S"
        )
        return self.gateway.db.run(journal.purge, before).addErrback(
            lambda f: log.warn("journal purge skipped: {error}", error=f.getErrorMessage())
        )

    # -- reload -----------------------------------------------------------------------------------

    def _on_sighup(self, signum, frame):
        from twisted.internet import reactor

        reactor.callFromThread(self.reload)

    def reload(self):
        """Re-read the configuration and certificates; keep the old ones if anything is wrong."""
        return self._reload_lock.run(self._reload)

    def _reload_log_level(self) -> None:
        """A reload: the level of Koha's log4perl.conf read again (unless ``--log-level`` was
        given), and put in force when it changed."""
        if self.options.get("log-level") is not None:
            return
        found = _log_level(self.options)
        for warning in found.warnings:
            log.warn("{warning}", warning=warning)
        if found.level != self.log_level.level:
            from koha_gateway import logs

            # Said at info while a level that writes it is in force: the old one when the
            # level goes up to warn, the new one otherwise.
            lowered = found.level == "warn"
            if not lowered:
                logs.set_level(self._log_observers, found.level)
            log.info(
                "SIP log level now {sip_level} ({source})",
                sip_level=found.level,
                source=found.source,
            )
            if lowered:
                logs.set_level(self._log_observers, found.level)
        self.log_level = found

    @defer.inlineCallbacks
    def _reload(self):
        self._reload_log_level()
        if self.gateway.reference is not None:
            # Whatever else happens, the next request reads the reference data again.
            self.gateway.reference.flush()
        old = self.gateway.config
        try:
            new = yield self.config_source.load(old)
        except (ConfigError, OSError, DatabaseError) as exc:
            log.error("reload refused, keeping the running configuration: {error}", error=str(exc))
            return False
        old_services = {s.address.spec: s for s in old.services}
        new_services = {s.address.spec: s for s in new.services}
        if set(old_services) != set(new_services) or any(
            old_services[k].transport != new_services[k].transport for k in new_services
        ):
            log.warn("reload: listener addresses or transports changed; restart to apply them")
        # Check every listener's new settings before putting any of them in force.
        appliers = []
        try:
            for spec, service_config in new_services.items():
                listener = self.listeners.get(f"sip2:{spec}")
                if listener is None or service_config.transport != old_services[spec].transport:
                    continue
                apply = listener.prepare_reload(service_config, new.server_params)
                appliers.append((listener, service_config, apply))
        except Exception as exc:
            log.error("reload refused, keeping the running configuration: {error}", error=str(exc))
            return False
        for listener, service_config, apply in appliers:
            apply()
            listener.sip_factory.service = service_config
        self._apply_reference_max_age(new)
        try:
            version, _schema, prefs, warnings = yield self.gateway.db.run(_startup_checks, new)
        except Exception as exc:
            log.warn("reload: database checks skipped: {error}", error=str(exc))
            prefs, warnings = None, []
        self.gateway.set_config(new, prefs or None)
        for warning in list(new.warnings) + warnings:
            log.warn("{warning}", warning=warning)
        log.info(
            "reloaded {path}: {accounts} accounts, {institutions} institutions{sources}",
            path=new.path,
            accounts=len(new.accounts),
            institutions=len(new.institutions),
            sources=describe_sources(new),
        )
        return True
