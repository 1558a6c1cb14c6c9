"""Property tests: arbitrary input never breaks the session or the parser."""

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from koha_gateway.sip2.checksum import checksum
from koha_gateway.sip2.codec import ParseError, Response, parse
from koha_gateway.sip2.output import OutputPolicy
from koha_gateway.sip2.session import Close, Credentials, Reply, Request, Session
from koha_gateway.sip2.templates import Template, TemplateError

# A well-formed SIP line: two digits, printable bytes, optional AY/AZ, CR (or CRLF) at the end.
SIP_LINE = re.compile(rb"\A\d\d[^\r\n]*\r\n?\Z")
LOGIN = b"9300CNterm1|COsecret|CPCPL|\r"
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

sip_like = st.lists(
    st.one_of(
        st.binary(max_size=64),
        st.sampled_from(
            [b"\r", b"\n", b"\r\n", b"|", b"AY", b"AZ", b"97", b"99", b"93", b"63", b"\xff",
             b"AZFEF5", b"9900302.00", b"9900301.00", b"AY1AZ", LOGIN]
        ),
    ),
    max_size=20,
)  # fmt: skip


def check_events(events, allowed=(Request, Reply, Close)):
    for event in events:
        assert isinstance(event, allowed), event
        if isinstance(event, Reply):
            assert SIP_LINE.match(event.data), event.data


def run(session, chunks, allowed=(Request, Reply, Close)):
    for chunk in chunks:
        events = session.receive_data(chunk)
        check_events(events, allowed)
        for event in events:
            if isinstance(event, Request):
                if event.message.code == "93":
                    check_events(session.login_ok(OutputPolicy(terminator=b"\r")), allowed)
                data = session.respond(Response("94").fixed("1"), event.seq)
                assert SIP_LINE.match(data)


@FUZZ
@given(st.lists(st.binary(max_size=200), max_size=10))
def test_arbitrary_bytes_before_login(chunks):
    run(Session(max_line=256), chunks)


@FUZZ
@given(sip_like)
def test_arbitrary_bytes_after_login(chunks):
    session = Session(max_line=256)
    run(session, [LOGIN] + chunks)


@FUZZ
@given(sip_like)
def test_sip_like_with_valid_checksums(chunks):
    session = Session(max_line=256)
    lines = [LOGIN]
    for i, chunk in enumerate(chunks):
        body = chunk.replace(b"\r", b"").replace(b"\n", b"") + b"AY" + str(i % 10).encode()
        body += b"AZ"
        lines.append(body + checksum(body).encode() + b"\r")
    run(session, lines)


@FUZZ
@given(st.lists(st.binary(max_size=50), max_size=10))
def test_telnet_arbitrary_bytes(chunks):
    session = Session("telnet", max_line=256)
    for chunk in chunks:
        events = session.receive_data(chunk)
        for event in events:
            assert isinstance(event, (Request, Reply, Close, Credentials))
            if isinstance(event, Credentials):
                for after in session.login_failed():  # telnet prompts are not SIP lines
                    assert isinstance(after, (Request, Reply, Close))


@FUZZ
@given(st.text(max_size=120), st.sampled_from(["|", "^"]))
def test_parse_only_raises_parse_error(text, delimiter):
    try:
        msg = parse(text, delimiter)
    except ParseError:
        return
    assert msg.code == text[:2]


@FUZZ
@given(st.text(max_size=80))
def test_templates_compile_or_raise_template_error(source):
    try:
        template = Template(source)
    except TemplateError:
        return
    assert isinstance(template.render(patron={"firstname": "A"}), str)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["AF", "AO", "AA", "XY"]), st.text(max_size=30))))
def test_encode_always_well_formed(fields):
    for encoding in ("utf-8", "ascii", "cp850"):
        policy = OutputPolicy(encoding=encoding, terminator=b"\r", convert_nonprinting=" ")
        response = Response("36").fixed("Y", "20261129    084238")
        for fid, value in fields:
            response.add(fid, value)
        data = response.encode(policy, seq="1")
        assert SIP_LINE.match(data)
        assert data.count(b"\r") == 1
