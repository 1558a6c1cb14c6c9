"""Net::Server's ``[host:]port[/tcp][/IPv4|/IPv6]`` syntax (koha-sip-and-ldap §1.4)."""

from __future__ import annotations

import pytest

from koha_gateway.config import ListenAddress, parse_listen_address


@pytest.mark.parametrize(
    ("spec", "host", "port", "family"),
    [
        ("8023/tcp", "", 8023, None),
        ("8023", "", 8023, None),
        ("127.0.0.1:6001/tcp", "127.0.0.1", 6001, None),
        ("*:6001/tcp", "", 6001, None),
        ("127.0.0.1:6001/tcp/IPv4", "127.0.0.1", 6001, "IPv4"),
        ("127.0.0.1:6001/TCP/ipv4", "127.0.0.1", 6001, "IPv4"),
        ("[::1]:6001/tcp", "::1", 6001, None),
        ("[::1]:6001/tcp/IPv6", "::1", 6001, "IPv6"),
        ("[0:0:0:0:0:0:0:1]:6001", "::1", 6001, None),
        ("::1:6001", "::1", 6001, None),
        ("localhost:6001", "localhost", 6001, None),
        ("sip.library.example.org:6001/tcp", "sip.library.example.org", 6001, None),
        ("6001/tcp/IPv*", "", 6001, None),
        ("6001/IPv6/tcp", "", 6001, "IPv6"),
        ("0.0.0.0:1", "0.0.0.0", 1, None),
        ("65535", "", 65535, None),
        (" 6001/tcp ", "", 6001, None),
    ],
)
def test_accepted_specs(spec, host, port, family):
    address = parse_listen_address(spec)
    assert address == ListenAddress(host=host, port=port, family=family, spec=spec)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("0", "bad port '0'"),
        ("65536", "bad port '65536'"),
        ("-1/tcp", "bad port '-1'"),
        ("abc", "bad port 'abc'"),
        ("127.0.0.1:/tcp", "bad port ''"),
        ("[::1]/tcp", "expected [address]:port"),
        ("[fe80::zz]:6001", "bad IPv6 address"),
        ("6001/udp", "/udp is not supported"),
        ("6001/tcp/tcp", "protocol given twice"),
        ("6001/IPv4/IPv6", "IP family given twice"),
        ("6001/ssl", "/ssl is not supported"),
        ("6001/sctp", "unknown protocol or family 'sctp'"),
        ("6001/", "unknown protocol or family ''"),
        ("127.0.0.1:6001/tcp/IPv6", "is an IPv4 address but"),
        ("[::1]:6001/tcp/IPv4", "is an IPv6 address but"),
        ("bad_host!:6001", "bad host 'bad_host!'"),
        ("", "missing port"),
        ("   ", "missing port"),
    ],
)
def test_refused_specs(spec, message):
    with pytest.raises(ValueError) as caught:
        parse_listen_address(spec)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("a", "b", "conflict"),
    [
        ("6001", "127.0.0.1:6001", True),
        ("*:6001", "[::1]:6001", True),
        ("0.0.0.0:6001", "10.1.1.1:6001", True),
        ("[::]:6001", "10.1.1.1:6001", True),
        ("127.0.0.1:6001", "127.0.0.1:6001/tcp/IPv4", True),
        ("127.0.0.1:6001", "127.0.0.2:6001", False),
        ("6001", "6002", False),
    ],
)
def test_conflicts(a, b, conflict):
    first, second = parse_listen_address(a), parse_listen_address(b)
    assert first.conflicts_with(second) is conflict
    assert second.conflicts_with(first) is conflict


def test_str_is_host_and_port():
    assert str(parse_listen_address("8023/tcp")) == "*:8023"
    assert str(parse_listen_address("[::1]:6001/tcp")) == "[::1]:6001"
    assert str(parse_listen_address("127.0.0.1:6001/tcp/IPv4")) == "127.0.0.1:6001"
