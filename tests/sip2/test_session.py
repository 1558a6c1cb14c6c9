"""Session: login phase, error detection, 97 resend, version handling, telnet, masking."""

import pytest

from koha_gateway.sip2.checksum import checksum, verify
from koha_gateway.sip2.codec import Response
from koha_gateway.sip2.output import DEFAULT_POLICY, OutputPolicy
from koha_gateway.sip2.session import Close, Credentials, Reply, Request, Session, mask_text

T = "20261129    084238"
LOGIN = b"9300CNterm1|COsecret!|CPCPL|"
CR_POLICY = OutputPolicy(terminator=b"\r", encoding="cp850")


def with_ad(body: bytes, seq: str = "0", lower: bool = False) -> bytes:
    data = body + b"AY" + seq.encode() + b"AZ"
    cs = checksum(data)
    return data + (cs.lower() if lower else cs).encode()


def logged_in(transport="RAW", policy=CR_POLICY) -> Session:
    s = Session(transport)
    if transport == "telnet":
        s.receive_data(b"term1\r\n")
        (cred,) = s.receive_data(b"secret\r\n")
        assert isinstance(cred, Credentials)
    else:
        (req,) = s.receive_data(LOGIN + b"\r")
        assert isinstance(req, Request)
    s.login_ok(policy)
    return s


# --- RAW login phase -------------------------------------------------------------------------


def test_raw_login_request_and_success():
    s = Session()
    assert s.greeting() == b""
    assert not s.logged_in and s.policy is DEFAULT_POLICY
    (req,) = s.receive_data(LOGIN + b"\r\n")
    assert req.message.name == "Login" and req.seq is None and req.raw == LOGIN
    assert req.message.get("CO") == "secret!"
    assert s.login_ok(CR_POLICY) == []
    assert s.logged_in and s.policy is CR_POLICY and s.protocol_version == 2
    assert s.respond(Response("94").fixed("1")) == b"941\r"


@pytest.mark.parametrize(
    "first", [b"9900302.00", b"2300120060110    084238AOx|AAy|", b"GET / HTTP/1.1", b"97"]
)
def test_raw_first_message_must_be_login(first):
    s = Session()
    assert s.receive_data(first + b"\r" + LOGIN + b"\r") == [
        Close("first message was not a Login (93)")
    ]
    assert s.closed
    assert s.receive_data(LOGIN + b"\r") == []


def test_raw_failed_login_then_retry():
    s = Session()
    s.receive_data(LOGIN + b"\r")
    assert s.login_failed() == []
    assert s.respond(Response("94").fixed("0")) == b"940\r\n"
    (req,) = s.receive_data(LOGIN + b"\r")
    assert isinstance(req, Request)
    s.login_failed()
    assert s.receive_data(b"9900302.00\r") == [Close("first message was not a Login (93)")]


def test_lines_during_login_check_are_processed_in_order():
    s = Session()
    events = s.receive_data(LOGIN + b"\r9900302.00\r" + with_ad(b"9900302.00", "1") + b"\r")
    assert [e.message.code for e in events] == ["93", "99", "99"]
    assert [e.seq for e in events] == [None, None, "1"]
    assert s.login_ok(CR_POLICY) == []
    assert s.logged_in


def test_failed_login_then_anything_but_login_closes():
    s = Session()
    events = s.receive_data(LOGIN + b"\r9900302.00\r")
    assert len(events) == 2  # the adapter answers them in order and refuses the 99
    assert s.login_failed() == []
    assert s.receive_data(b"9900302.00\r") == [Close("first message was not a Login (93)")]


def test_telnet_lines_after_password_are_sip():
    s = Session("telnet")
    events = s.receive_data(b"term1\r\nsecret\r\n9900302.00\r")
    assert [type(e) for e in events] == [Reply, Credentials, Request]
    assert s.login_ok(CR_POLICY) == [Reply(b"Login OK.  Initiating SIP\r\n")]


def test_relogin_after_login():
    s = logged_in()
    (req,) = s.receive_data(LOGIN + b"\r")
    assert req.message.code == "93"
    assert s.login_failed() == []
    assert not s.logged_in and s.policy is DEFAULT_POLICY
    assert s.receive_data(b"9900302.00\r") == [Close("first message was not a Login (93)")]


# --- error detection ------------------------------------------------------------------------


@pytest.mark.parametrize("lower", [False, True])
def test_good_checksum(lower):
    s = logged_in()
    raw = with_ad(b"9900302.00", "4", lower=lower)
    (req,) = s.receive_data(raw + b"\r")
    assert req.seq == "4" and req.raw == raw
    assert req.message.fixed["protocol_version"] == "2.00" and req.message.fields == ()
    data = s.respond(Response("94").fixed("1"), req.seq)
    assert data.startswith(b"941AY4AZ") and data.endswith(b"\r") and verify(data[:-1])


def test_good_checksum_after_delimiter_and_login():
    s = Session()
    (req,) = s.receive_data(with_ad(LOGIN, "0") + b"\r")
    assert req.seq == "0" and req.message.get("CP") == "CPL"


def test_bad_checksum():
    s = logged_in()
    raw = with_ad(b"9900302.00", "4")
    bad = raw[:-1] + (b"0" if raw[-1:] != b"0" else b"1")
    assert s.receive_data(bad + b"\r") == [Reply(b"96AZFEF6\r")]
    assert s.receive_data(b"9900302.00AYXAZ0000\r") == [Reply(b"96AZFEF6\r")]
    assert s.receive_data(b"9900302.00AY1AZGGGG\r") == [Reply(b"96AZFEF6\r")]
    assert not s.closed


@pytest.mark.parametrize("junk", [b"|", b" ", b"| "])
def test_trailing_junk_after_checksum(junk):
    s = logged_in()
    raw = with_ad(b"9900302.00", "6")
    (req,) = s.receive_data(raw + junk + b"\r")
    assert req.seq == "6" and req.message.fields == ()
    bad = raw[:-4] + b"0000"
    assert s.receive_data(bad + junk + b"\r") == [Reply(b"96AZFEF6\r")]


def test_bad_checksum_before_login_is_not_a_close():
    s = Session()
    raw = with_ad(LOGIN, "0")
    assert s.receive_data(raw[:-4] + b"0000\r") == [Reply(b"96AZFEF6\r")]
    (req,) = s.receive_data(raw + b"\r")
    assert isinstance(req, Request)


def test_no_error_detection_means_no_seq():
    s = logged_in()
    (req,) = s.receive_data(b"9900302.00\r")
    assert req.seq is None
    assert s.respond(Response("94").fixed("1"), req.seq) == b"941\r"


# --- 97 resend ------------------------------------------------------------------------------


def test_resend_before_any_response():
    s = logged_in()
    assert s.receive_data(b"97\r") == [Reply(b"96\r")]
    s = logged_in()
    assert s.receive_data(b"97AZFEF5\r") == [Reply(b"96\r")]


def test_resend_without_error_detection_is_verbatim():
    s = logged_in()
    sent = s.respond(Response("36").fixed("Y", T).add("AO", "CPL").add("AA", "p"))
    assert s.receive_data(b"97\r") == [Reply(sent)]
    assert s.receive_data(b"97AZFEF5\r") == [Reply(sent)]
    assert s.receive_data(b"97AZfef5\r") == [Reply(sent)]


def test_resend_with_error_detection_rewrites_sequence():
    s = logged_in()
    sent = s.respond(Response("36").fixed("Y", T).add("AO", "CPL").add("AA", "p"), "3")
    (reply,) = s.receive_data(with_ad(b"97", "5") + b"\r")
    assert verify(reply.data[:-1])
    assert reply.data == sent[:-10] + b"AY5AZ" + checksum(sent[:-10] + b"AY5AZ").encode() + b"\r"
    (again,) = s.receive_data(b"97AZFEF5\r")
    assert again.data == reply.data  # no new sequence number: keep the last one


def test_resend_bad_checksum():
    s = logged_in()
    s.respond(Response("94").fixed("1"))
    assert s.receive_data(b"97AZFEF4\r") == [Reply(b"96AZFEF6\r")]
    # ...and the 96 becomes the last response.
    assert s.receive_data(b"97\r") == [Reply(b"96AZFEF6\r")]


# --- unknown / unparseable / version --------------------------------------------------------


@pytest.mark.parametrize("line", [b"XX", b"24              000", b"11YN", b"\xff\xfe"])
def test_unknown_or_unparseable(line):
    s = logged_in()
    assert s.receive_data(line + b"\r") == [Reply(b"96\r")]
    assert not s.closed


def test_version_switching():
    s = logged_in()
    patron_info = f"63000{T}          AOCPL|AAp|".encode()
    (req,) = s.receive_data(b"9900301.00\r")
    assert s.protocol_version == 1 and req.message.code == "99"
    assert s.receive_data(patron_info + b"\r") == [Reply(b"96\r")]
    (req,) = s.receive_data(f"23000{T}AOCPL|AAp|".encode() + b"\r")
    assert req.message.code == "23"  # version 1 message still accepted
    s.receive_data(b"9900302.00\r")
    assert s.protocol_version == 2
    (req,) = s.receive_data(patron_info + b"\r")
    assert req.message.code == "63"
    s.receive_data(b"990030    \r")  # unknown version text: unchanged
    assert s.protocol_version == 2


def test_login_selects_version_two():
    s = logged_in()
    s.receive_data(b"9900301.00\r")
    s.receive_data(LOGIN + b"\r")
    assert s.protocol_version == 2


# --- framing in the session -----------------------------------------------------------------


def test_empty_lines_ignored():
    s = logged_in()
    assert s.receive_data(b"\r\n\r\n   \r") == []
    assert not s.closed
    s = Session()
    assert s.receive_data(b"\r\n") == []
    assert not s.closed


def test_split_and_coalesced():
    s = logged_in()
    assert s.receive_data(b"99003") == []
    events = s.receive_data(b"02.00\r\n9900302.00\n99")
    assert len(events) == 2 and all(isinstance(e, Request) for e in events)


def test_line_too_long():
    s = Session(max_line=64)
    s.receive_data(LOGIN + b"\r")
    s.login_ok(CR_POLICY)
    events = s.receive_data(b"9900302.00\r" + b"9" * 65)
    assert isinstance(events[0], Request)
    assert events[-1] == Close("line longer than 64 bytes")
    assert s.receive_data(b"9900302.00\r") == []


def test_decoding_with_account_encoding_and_fallback():
    s = logged_in(policy=OutputPolicy(encoding="cp850"))
    (req,) = s.receive_data(f"17{T}AOCPL|AB".encode() + "Ærø".encode("cp850") + b"|\r")
    assert req.message.get("AB") == "Ærø"
    s = logged_in(policy=OutputPolicy(encoding="utf-8"))
    (req,) = s.receive_data(f"17{T}AOCPL|AB".encode() + b"\xe9t\xe9|\r")
    assert req.message.get("AB") == "été"  # not UTF-8: read as latin-1


# --- telnet ---------------------------------------------------------------------------------


def test_telnet_login_ok():
    s = Session("telnet")
    assert s.greeting() == b"login: "
    # a real telnet client opens with option negotiation
    assert s.receive_data(b"\xff\xfd\x03\xff\xfb\x18\xff\xfa\x18\x01\xff\xf0") == []
    assert s.receive_data(b"term1\r\n") == [Reply(b"password: ")]
    (cred,) = s.receive_data(b"sec\xff\xffret\r\x00")
    assert cred == Credentials("term1", "sec\xffret")  # IAC IAC is a literal 0xFF
    assert "sec" not in repr(cred)
    assert s.login_ok(CR_POLICY) == [Reply(b"Login OK.  Initiating SIP\r\n")]
    assert s.logged_in and s.protocol_version == 2
    (req,) = s.receive_data(f"63000{T}          AOCPL|AAp|".encode() + b"\r")
    assert req.message.code == "63"  # version 2 right after telnet login


def test_telnet_three_attempts():
    s = Session("telnet")
    for attempt in range(3):
        assert s.receive_data(b"user\r") == [Reply(b"password: ")]
        assert isinstance(s.receive_data(b"wrong\r")[0], Credentials)
        events = s.login_failed()
        assert events[0] == Reply(b"Invalid login\r\n")
        if attempt < 2:
            assert events[1:] == [Reply(b"login: ")]
    assert events[-1] == Close("3 failed telnet logins")
    assert s.closed


def test_telnet_empty_user_reprompts():
    s = Session("telnet")
    assert s.receive_data(b"\r\n") == [Reply(b"login: ")]


def test_telnet_iac_split_across_reads():
    s = Session("telnet")
    assert s.receive_data(b"us\xff") == []
    assert s.receive_data(b"\xfd") == []
    assert s.receive_data(b"\x01er\r") == [Reply(b"password: ")]


def test_raw_keeps_0xff_bytes():
    s = logged_in(policy=OutputPolicy(encoding="latin-1"))
    (req,) = s.receive_data(f"17{T}AOCPL|ABx\xffy|".encode("latin-1") + b"\r")
    assert req.message.get("AB") == "x\xffy"


# --- masking --------------------------------------------------------------------------------


def test_mask_request_passwords():
    s = Session()
    assert s.mask(LOGIN) == "9300CNterm1|CO****|CPCPL|"
    raw = f"23001{T}AOCPL|AA123|ACterm|ADpin|".encode()
    assert s.mask(raw) == f"23001{T}AOCPL|AA123|AC****|AD****|"
    assert s.mask(with_ad(b"9300CNterm1|COsecret")).startswith("9300CNterm1|CO****AY0AZ")
    assert "secret" not in s.mask(with_ad(b"9300CNterm1|COsecret"))
    assert s.mask("9300CNu|COx|\r\n") == "9300CNu|CO****|\\r\\n"


def test_mask_does_not_touch_fixed_part():
    raw = f"11YN{T}{' ' * 18}AOCPL|AAp|ABi|AC|".encode()
    assert Session().mask(raw) == f"11YN{T}{' ' * 18}AOCPL|AAp|ABi|AC****|"
    assert mask_text("9900302.00") == "9900302.00"


def test_mask_leaves_responses_alone():
    data = Response("64").fixed(" " * 14, "000", T, *["0000"] * 6).add("AO", "CPL").encode()
    assert Session().mask(data) == data.decode().replace("\r\n", "\\r\\n")


def test_mask_telnet_password_line():
    s = Session("telnet")
    s.receive_data(b"term1\r\n")
    s.receive_data(b"hunter2\r\n")
    assert s.mask(b"hunter2") == "****"
    assert s.mask(b"hunter2\r\n") == "****"
    s.login_failed()
    assert s.mask(b"term1") == "term1"


def test_session_delimiter_wins_for_output():
    s = Session(delimiter="^")
    s.receive_data(b"9300CNterm1^COx^\r")
    s.login_ok(OutputPolicy(delimiter="|", hide_fields="AE", terminator=b"\r"))
    assert s.policy.delimiter == "^" and s.policy.hide_fields == {"AE"}
    (req,) = s.receive_data(f"17{T}AOCPL^ABi1^".encode() + b"\r")
    assert req.message.get("AB") == "i1"
    data = s.respond(Response("20").fixed("1", T).add("AB", "i1").add("AE", "x"))
    assert data == f"201{T}ABi1^".encode() + b"\r"
