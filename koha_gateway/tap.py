"""twistd options and service construction for ``twistd koha-gateway`` (model: twisted/mail/tap.py).

Configuration errors are reported before the reactor starts, each naming the file and line, and
stop start-up with a non-zero exit status.
"""

from __future__ import annotations

import gc
import os
import sys

from twisted.python import usage

from koha_gateway import __version__


class Options(usage.Options):
    """Command line of the twistd plugin (``twistd koha-gateway --help``)."""

    synopsis = "[options]"
    longdesc = (
        "Serves SIP2 to self-check kiosks, sorters and PC-booking systems from Koha's "
        "SIPconfig.xml: one listener per <service>, RAW, telnet and TLS transports."
    )

    optParameters = [
        [
            "sip-config",
            "c",
            None,
            "Koha's SIPconfig.xml (listeners, accounts, institutions). Optional when Koha's "
            "database holds them (sip_* tables, Koha bug 37893).",
        ],
        [
            "database",
            "d",
            None,
            "Database URL: mysql://user:pass@host:port/db (Koha's database), "
            "postgresql://user:pass@host:port/db or sqlite:///abs/path.sqlite. "
            "Default: from --koha-conf.",
        ],
        ["koha-conf", "k", None, "Koha's koha-conf.xml (database and LDAP settings)."],
        ["sip-log", None, None, "Write SIP activity in Koha's log format to this file."],
        ["error-log", None, None, "Write warnings and errors in Koha's log format to this file."],
        ["db-pool-size", None, None, "Database connections in the pool (default per engine)."],
        [
            "log-level",
            None,
            None,
            "Lowest level written to the SIP logs: debug (also every message), info, warn "
            "(default: the sip level of Koha's log4perl.conf named by koha-conf.xml; info).",
        ],
        [
            "workers",
            None,
            None,
            "Processes serving the listeners, sharing their sockets (default: workers in "
            "<server-params>; 1).",
        ],
        [
            "admin-port",
            None,
            None,
            "Serve /metrics, /health and /ready over HTTP on this port (default: "
            "<admin_port> of koha-conf.xml; none).",
        ],
        ["admin-interface", None, "127.0.0.1", "Address of the admin listener."],
        ["log-format", None, "koha", "Format of the SIP logs: koha (Koha's lines) or json."],
        ["adopt-listeners", None, None, "Internal: listening sockets inherited from the master."],
        [
            "sip-config-poll",
            None,
            "30",
            "Seconds between checks of Koha's SIP configuration tables for edits (0: only SIGHUP).",
        ],
        [
            "reference-max-age",
            None,
            None,
            "Seconds reference data (branches, item types, categories, circulation rules, "
            "calendars, currency) and system preferences are used before the database is "
            "checked for changes (0: reference data read per request; default: "
            "reference_max_age in <server-params>; 10).",
        ],
    ]
    optFlags = [
        ["check-config", None, "Check the configuration files and the database, then exit."],
    ]

    def parseOptions(self, options=None):
        # Workers are started with the plugin's own command line.
        self.argv = list(sys.argv[1:] if options is None else options)
        super().parseOptions(options)

    def opt_version(self):
        """Print the version and exit."""
        print(f"koha-gateway {__version__}")
        raise SystemExit(0)

    def postOptions(self):
        from koha_gateway.config import ConfigError, load_koha_conf, load_sip_config

        if self["sip-config"] and not os.path.exists(self["sip-config"]):
            raise usage.UsageError(f"{self['sip-config']}: no such file")
        # Without SIPconfig.xml, or with one that is incomplete on its own, the configuration
        # may still come from Koha's database (checked when the service is made).
        self["sip_config"] = self["sip_config_error"] = None
        if self["sip-config"]:
            try:
                self["sip_config"] = load_sip_config(self["sip-config"])
            except ConfigError as exc:
                self["sip_config_error"] = exc
        try:
            # --database always wins over koha-conf.xml's database, which is then not judged;
            # the file still supplies LDAP.
            self["koha_conf"] = (
                load_koha_conf(self["koha-conf"], require_database=not self["database"])
                if self["koha-conf"]
                else None
            )
        except ConfigError as exc:
            raise usage.UsageError(str(exc)) from None
        if not self["database"]:
            if self["koha_conf"] is None:
                raise usage.UsageError("give --database URL or --koha-conf PATH")
            try:
                self["database"] = self["koha_conf"].database_url
            except ConfigError as exc:
                raise usage.UsageError(str(exc)) from None
        if self["db-pool-size"] is not None:
            try:
                self["db-pool-size"] = int(self["db-pool-size"])
            except ValueError:
                raise usage.UsageError("--db-pool-size takes a number") from None
        if self["workers"] is not None:
            try:
                self["workers"] = int(self["workers"])
            except ValueError:
                raise usage.UsageError("--workers takes a number") from None
            if self["workers"] < 1:
                raise usage.UsageError("--workers is at least 1")
        try:
            self["sip-config-poll"] = float(self["sip-config-poll"])
        except ValueError:
            raise usage.UsageError("--sip-config-poll takes a number of seconds") from None
        # None when not given: <server-params> may say, else the default (service.py).
        if self["reference-max-age"] is not None:
            try:
                self["reference-max-age"] = float(self["reference-max-age"])
            except ValueError:
                raise usage.UsageError("--reference-max-age takes a number of seconds") from None
            if not 0 <= self["reference-max-age"] < float("inf"):
                raise usage.UsageError("--reference-max-age is 0 or more seconds")
        if self["admin-port"] is None and self["koha_conf"] is not None:
            self["admin-port"] = getattr(self["koha_conf"], "admin_port", None)
        if self["admin-port"] is not None:
            try:
                self["admin-port"] = int(self["admin-port"])
            except ValueError:
                raise usage.UsageError("--admin-port takes a port number") from None
            if not 1 <= self["admin-port"] <= 65535:
                raise usage.UsageError("--admin-port takes a port number (1..65535)")
        if self["log-format"] not in ("koha", "json"):
            raise usage.UsageError("--log-format is koha or json")
        # None when not given: Koha's log4perl.conf may say, else info (service.py).
        if self["log-level"] is not None and self["log-level"] not in ("debug", "info", "warn"):
            raise usage.UsageError("--log-level is one of debug, info, warn")


def makeService(options):
    """Build the gateway service; fails start-up with a clear message on a bad setup."""
    from koha_gateway.service import GatewayService, StartupError

    try:
        service = GatewayService.from_options(options)
    except StartupError as exc:
        raise SystemExit(f"koha-gateway: {exc}") from None
    if options["check-config"]:
        service.report_check()
        raise SystemExit(0)
    tune_garbage_collector()
    return service


#: Allocations between two young-generation collections (CPython's default is 700).
GC_YOUNG_THRESHOLD = 50_000


def tune_garbage_collector() -> None:
    """Fewer, cheaper cyclic garbage collections for a server holding thousands of connections.

    With CPython's defaults a collection runs every 700 allocations, and every so often one
    walks every object the process holds; with 10,000 connections that was about a sixth of
    the CPU a login storm costs (bench/login_storm.py). What start-up made (modules, the
    configuration) is moved out of the collector's sight (``gc.freeze``), and the young
    generation is collected every :data:`GC_YOUNG_THRESHOLD` allocations. Reference counting
    still frees everything without cycles at once; cycles wait a little longer.
    """
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    if young:  # 0 means collection is off: leave it so
        gc.set_threshold(max(young, GC_YOUNG_THRESHOLD), middle, old)
