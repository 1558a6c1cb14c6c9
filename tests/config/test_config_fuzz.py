"""Whatever an administrator writes, the loaders either succeed or raise ConfigError with a
location: never another exception, never a crash at start-up with a traceback."""

from __future__ import annotations

import tempfile
from pathlib import Path
from xml.sax.saxutils import quoteattr

from config_helpers import build_sip_xml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from koha_gateway.config import ConfigError, load_koha_conf, load_sip_config, parse_listen_address
from koha_gateway.config.sipconfig import _LOGIN_ATTRIBUTES

# Characters XML 1.0 allows in attribute values (control characters are malformed XML).
VALUES = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), max_codepoint=0x2FFF), max_size=12
)
FUZZ = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def _load(text: str | bytes, name: str = "SIPconfig.xml"):
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        loader = load_koha_conf if name == "koha-conf.xml" else load_sip_config
        try:
            return loader(path)
        except ConfigError as error:
            assert error.path == str(path)
            assert str(error).startswith(str(path))
            return error


@FUZZ
@given(st.text(max_size=40))
def test_listen_address_only_raises_value_error(spec):
    try:
        address = parse_listen_address(spec)
    except ValueError:
        return
    assert 1 <= address.port <= 65535


@FUZZ
@given(
    attribute=st.sampled_from(sorted(set(_LOGIN_ATTRIBUTES) - {"id", "institution"})),
    value=VALUES,
)
def test_any_login_attribute_value(attribute, value):
    logins = f'<login id="joe" institution="CPL" {attribute}={quoteattr(value)} />'
    result = _load(build_sip_xml(logins=logins))
    if not isinstance(result, ConfigError):
        assert result.accounts["joe"].institution == "CPL"


@FUZZ
@given(
    attribute=st.sampled_from(
        ["port", "transport", "timeout", "client_timeout", "max_line_length", "proxy_protocol"]
    ),
    value=VALUES,
)
def test_any_service_attribute_value(attribute, value):
    attrs = {"port": "6001/tcp", "transport": "RAW", attribute: value}
    rendered = " ".join(f"{key}={quoteattr(text)}" for key, text in attrs.items())
    result = _load(build_sip_xml(services=f"<service {rendered} />"))
    if not isinstance(result, ConfigError):
        (service,) = result.services
        assert result.login_timeout(service) > 0
        idle = result.idle_timeout(service)
        assert idle is None or idle > 0


@FUZZ
@given(
    attribute=st.sampled_from(
        ["checkin", "checkout", "renewal", "status_update", "offline", "timeout", "retries"]
    ),
    value=VALUES,
)
def test_any_policy_value(attribute, value):
    institutions = f'<institution id="CPL"><policy {attribute}={quoteattr(value)} /></institution>'
    result = _load(build_sip_xml(institutions=institutions))
    assert not isinstance(result, ConfigError)
    policy = result.institutions["CPL"].policy
    assert 0 <= policy.timeout <= 999 and 0 <= policy.retries <= 999


@FUZZ
@given(st.binary(max_size=200))
def test_any_bytes(data):
    _load(data)


@FUZZ
@given(
    element=st.sampled_from(["db_scheme", "database", "hostname", "port", "user", "pass"]),
    value=VALUES,
)
def test_any_koha_conf_value(element, value):
    from xml.sax.saxutils import escape

    children = {"db_scheme": "Pg", "database": "koha", element: value}
    body = "".join(f"<{key}>{escape(text)}</{key}>" for key, text in children.items())
    result = _load(f"<yazgfs><config>{body}</config></yazgfs>", "koha-conf.xml")
    if isinstance(result, ConfigError):
        if element == "pass" and value:
            assert value not in str(result)
    else:
        assert result.database_url.startswith(("postgresql://", "sqlite://", "mysql://"))
        from koha_gateway.db.url import parse_url

        assert parse_url(result.database_url).engine == result.db_scheme
