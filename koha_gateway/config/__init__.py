"""Koha's configuration files turned into frozen dataclasses.

- :func:`load_sip_config` reads SIPconfig.xml (listeners, accounts, institutions,
  server parameters, syspref overrides) into a :class:`SIPConfig`.
- :func:`load_koha_conf` reads koha-conf.xml (database connection, ``<useldapserver>``,
  ``<ldapserver>``) into a :class:`KohaConf`.

Every error is a :class:`ConfigError` whose ``str()`` is ``path:line: message``.
"""

from koha_gateway.config.errors import ConfigError
from koha_gateway.config.kohaconf import KohaConf, load_koha_conf
from koha_gateway.config.sipconfig import (
    AccountConfig,
    InstitutionConfig,
    ListenAddress,
    PolicyConfig,
    ServerParams,
    ServiceConfig,
    SIPConfig,
    load_sip_config,
    parse_listen_address,
    perl_bool,
    to_bool,
)

__all__ = [
    "AccountConfig",
    "ConfigError",
    "InstitutionConfig",
    "KohaConf",
    "ListenAddress",
    "PolicyConfig",
    "SIPConfig",
    "ServerParams",
    "ServiceConfig",
    "load_koha_conf",
    "load_sip_config",
    "parse_listen_address",
    "perl_bool",
    "to_bool",
]
