"""The hardened XML reader: malformed documents, entity attacks, oversize files.

Each refusal is a ConfigError naming the file and the line of the offending construct.
"""

from __future__ import annotations

import time

import pytest
from config_helpers import build_sip_xml, line_of

from koha_gateway.config import ConfigError, load_koha_conf, load_sip_config
from koha_gateway.config import errors as config_errors


def test_malformed_xml_reports_the_parser_line(write_file):
    text = build_sip_xml(logins='<login id="a" institution="CPL">\n<oops>\n</login>')
    path = write_file(text)
    with pytest.raises(ConfigError) as caught:
        load_sip_config(path)
    error = caught.value
    assert error.path == str(path)
    # libxml2 notices the mismatch on the </login> line.
    assert error.line == line_of(text, "</login>")
    assert str(error).startswith(f"{path}:{error.line}: malformed XML: ")
    assert "mismatch" in error.message


def test_empty_file_is_malformed(write_file):
    path = write_file("")
    with pytest.raises(ConfigError) as caught:
        load_sip_config(path)
    assert caught.value.line == 1
    assert "malformed XML" in str(caught.value)


def test_missing_file_names_the_file_without_a_line(tmp_path):
    path = tmp_path / "nope.xml"
    with pytest.raises(ConfigError) as caught:
        load_sip_config(path)
    assert caught.value.line is None
    assert str(caught.value).startswith(f"{path}: cannot read the file")


def test_internal_entity_is_refused_at_its_line(write_file):
    text = (
        '<?xml version="1.0"?>\n'
        "<!DOCTYPE acsconfig [\n"
        '  <!ENTITY pw "joes">\n'
        "]>\n"
        + build_sip_xml(logins='<login id="joe" password="&pw;" institution="CPL" />').split(
            "\n", 1
        )[1]
    )
    path = write_file(text)
    with pytest.raises(ConfigError) as caught:
        load_sip_config(path)
    assert caught.value.line == 3
    assert "DOCTYPE that declares entities" in str(caught.value)


def test_external_entity_xxe_is_refused(write_file, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0")
    text = (
        '<?xml version="1.0"?>\n'
        f'<!DOCTYPE acsconfig [ <!ENTITY xxe SYSTEM "file://{secret}"> ]>\n'
        + build_sip_xml(logins='<login id="&xxe;" institution="CPL" />').split("\n", 1)[1]
    )
    path = write_file(text)
    with pytest.raises(ConfigError) as caught:
        load_sip_config(path)
    assert caught.value.line == 2
    assert "root:x" not in str(caught.value)


def test_parameter_entity_is_refused(write_file):
    text = (
        '<?xml version="1.0"?>\n'
        '<!DOCTYPE acsconfig [ <!ENTITY % remote SYSTEM "http://203.0.113.9/x.dtd"> %remote; ]>\n'
        "<acsconfig/>\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_sip_config(write_file(text))
    assert caught.value.line == 2


def test_billion_laughs_is_refused_quickly(write_file):
    lines = ['<?xml version="1.0"?>', "<!DOCTYPE lolz ["]
    lines.append('  <!ENTITY lol "lol">')
    for level in range(1, 10):
        previous = "lol" if level == 1 else f"lol{level - 1}"
        lines.append(f'  <!ENTITY lol{level} "{("&" + previous + ";") * 10}">')
    lines.append("]>")
    lines.append("<acsconfig><listeners>&lol9;</listeners></acsconfig>")
    path = write_file("\n".join(lines) + "\n")
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        load_sip_config(path)
    assert time.monotonic() - started < 2.0
    assert caught.value.line == 3
    assert "entities" in caught.value.message


def test_billion_laughs_in_utf16_is_refused(write_file):
    text = (
        '<?xml version="1.0" encoding="UTF-16"?>\n'
        '<!DOCTYPE acsconfig [\n<!ENTITY a "aaaaaaaaaa">\n<!ENTITY b "&a;&a;&a;&a;">\n]>\n'
        '<acsconfig timeout="&b;"/>\n'
    )
    path = write_file(text.encode("utf-16"))
    with pytest.raises(ConfigError) as caught:
        load_sip_config(path)
    assert caught.value.line == 3


def test_entities_hidden_from_the_text_scan_are_still_refused(write_file, monkeypatch):
    # Defence in depth: should the byte scan ever miss a declaration (an encoding it cannot
    # read), the parsed document's DTD is checked too. The scan is blinded here; the real
    # parser still runs.
    monkeypatch.setattr(config_errors, "_text_for_scan", lambda data: "")
    text = '<?xml version="1.0"?>\n<!DOCTYPE acsconfig [\n<!ENTITY a "x">\n]>\n<acsconfig/>\n'
    with pytest.raises(ConfigError) as caught:
        load_sip_config(write_file(text))
    assert "DOCTYPE that declares entities" in caught.value.message


def test_undeclared_entity_is_malformed(write_file):
    text = build_sip_xml(logins='<login id="&nope;" institution="CPL" />')
    with pytest.raises(ConfigError) as caught:
        load_sip_config(write_file(text))
    assert caught.value.line == line_of(text, "&nope;")
    assert "nope" in caught.value.message


def test_doctype_without_entities_is_accepted_and_nothing_is_fetched(write_file, tmp_path):
    # The external DTD is neither loaded nor fetched (no_network, load_dtd=False): a DTD that
    # does not exist, on an address nobody listens on, does not matter.
    text = (
        '<?xml version="1.0"?>\n'
        '<!DOCTYPE acsconfig SYSTEM "http://203.0.113.9/acsconfig.dtd">\n'
        + build_sip_xml().split("\n", 1)[1]
    )
    config = load_sip_config(write_file(text))
    assert list(config.accounts) == ["term1"]


def test_predefined_entities_and_character_references_still_work(write_file):
    text = build_sip_xml(
        logins='<login id="a&amp;b" password="&lt;&#x41;&gt;" institution="CPL" />'
    )
    config = load_sip_config(write_file(text))
    assert config.accounts["a&b"].password == "<A>"


def test_oversized_file_is_refused(write_file, monkeypatch):
    monkeypatch.setattr(config_errors, "MAX_CONFIG_BYTES", 1024)
    text = build_sip_xml(top="<!--" + "x" * 2048 + "-->")
    with pytest.raises(ConfigError) as caught:
        load_sip_config(write_file(text))
    assert "larger than" in caught.value.message


def test_koha_conf_goes_through_the_same_reader(write_file):
    text = (
        '<?xml version="1.0"?>\n<!DOCTYPE yazgfs [\n<!ENTITY pass "x">\n]>\n'
        "<yazgfs><config><db_scheme>Pg</db_scheme><database>koha</database>"
        "<pass>&pass;</pass></config></yazgfs>\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_koha_conf(write_file(text, "koha-conf.xml"))
    assert caught.value.line == 3


def test_config_error_format():
    error = ConfigError("bad port", "/etc/koha/SIPconfig.xml", 12)
    assert str(error) == "/etc/koha/SIPconfig.xml:12: bad port"
    assert (error.message, error.path, error.line) == ("bad port", "/etc/koha/SIPconfig.xml", 12)
    assert str(ConfigError("cannot read", "x.xml")) == "x.xml: cannot read"
