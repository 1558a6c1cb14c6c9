"""End to end over real sockets: transports, login, framing, error detection, bad input.

3M SIP2 2.00 "Communications" and "Error detection"; Koha's transports (koha-sip-and-ldap.md
sections 2 and 3).
"""

from __future__ import annotations

import socket
import time

import pytest

from koha_gateway.client import SIPClient, SIPError
from koha_gateway.sip2.checksum import checksum, verify
from tests.gateway import sip_date

NOW = sip_date()  # the pinned instant the test gateways run at


def read_until(sock: socket.socket, marker: bytes, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while marker not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def closed_by_server(sock: socket.socket, timeout: float = 10.0) -> bool:
    sock.settimeout(timeout)
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_raw_login_and_status(gateway):
    with gateway.client() as client:
        assert client.login("joe", "joes") == "941"
        answer = client.request("9900302.00")
        assert answer.startswith("98YYYYYN")
        assert "|AOWEL|" in answer or "AOWEL|" in answer
        assert answer[32:36] == "2.00"


def test_login_refused_for_wrong_password_unknown_account_and_no_permission(gateway):
    with gateway.client() as client:
        assert client.login("joe", "wrong") == "940"
        assert client.login("nobody", "x") == "940"
        assert client.login("nocirc", "nocirc1") == "940"
        # 940 lets the client retry on the same connection
        assert client.login("joe", "joes") == "941"
    gateway.wait_for_log("nocirc")


def test_login_with_non_zero_algorithm_fails(gateway):
    with gateway.client() as client:
        assert client.request("9310CNjoe|COjoes|CP|") == "940"


def test_first_message_not_login_closes_the_connection_with_a_logged_reason(gateway):
    sock = socket.create_connection(("127.0.0.1", gateway.ports["raw"]))
    sock.sendall(b"9900302.00\r")
    assert closed_by_server(sock)
    gateway.wait_for_log("not a Login (93)")


def test_error_detection_checksums_and_sequence_numbers(gateway):
    with gateway.client(error_detection=True) as client:
        client.login("joe", "joes")
        answer = client.request("9900302.00")
        assert verify(answer.encode())
        assert answer[-9:-6] == "AY1"


def test_lower_case_checksum_is_accepted(gateway):
    with gateway.logged_in() as client:
        body = b"9900302.00AY3AZ"
        frame = body + checksum(body).lower().encode() + b"\r"
        client.send_raw(frame)
        answer = client.read_line()
        assert answer.startswith(b"98") and answer[-9:-6] == b"AY3"
        assert verify(answer)


def test_bad_checksum_gets_96_and_the_connection_stays(gateway):
    with gateway.logged_in() as client:
        client.send_raw(b"9900302.00AY1AZ0000\r")
        assert client.read_line() == b"96AZFEF6"
        assert client.request("9900302.00").startswith("98")


def test_97_resends_the_last_response(gateway):
    with gateway.logged_in() as client:
        first = client.request("9900302.00")
        assert client.request("97") == first


def test_unknown_command_gets_96(gateway):
    with gateway.logged_in() as client:
        assert client.request("XX123") == "96"


def test_crlf_bare_lf_split_and_coalesced_frames(gateway):
    with gateway.logged_in() as client:
        client.send_raw(b"9900302.00\r\n")
        assert client.read_line().startswith(b"98")
        client.send_raw(b"9900302.00\n")
        assert client.read_line().startswith(b"98")
        client.send_raw(b"99003")
        time.sleep(0.05)  # not a wait for a result: the rest goes in a separate TCP segment
        client.send_raw(b"02.00\r")
        assert client.read_line().startswith(b"98")
        client.send_raw(b"9900302.00\r9900302.00\r\r\n")
        assert client.read_line().startswith(b"98")
        assert client.read_line().startswith(b"98")


def test_empty_lines_are_ignored(gateway):
    with gateway.logged_in() as client:
        client.send_raw(b"\r\r\n\r")
        assert client.request("9900302.00").startswith("98")


def test_huge_line_is_refused_and_logged(gateway):
    with gateway.logged_in() as client:
        client.send_raw(b"63" + b"x" * 20000)
        assert closed_by_server(client.sock)
    gateway.wait_for_log("longer than")
    # the server keeps serving others
    with gateway.logged_in() as other:
        assert other.request("9900302.00").startswith("98")


def test_garbled_input_never_gets_a_non_sip_answer(gateway):
    garbage = [
        b"\x00\x01\x02",
        b"11",
        b"63short",
        "6300020261129    120000Y         AOWEL|AA\u00e9|".encode(),
        b"\xff\xfe\xfd|||",
        b"09N" + b"9" * 200,
        b"15+",
        b"37" + b"|" * 50,
    ]
    with gateway.logged_in() as client:
        for line in garbage:
            client.send_raw(line + b"\r")
            answer = client.read_line()
            assert answer[:2].isdigit(), (line, answer)
        assert client.request("9900302.00").startswith("98")
    assert gateway.alive()


def test_telnet_login_prompts_and_sip(gateway):
    sock = socket.create_connection(("127.0.0.1", gateway.ports["telnet"]))
    assert read_until(sock, b"login: ").endswith(b"login: ")
    sock.sendall(b"joe\r\n")
    assert read_until(sock, b"password: ").endswith(b"password: ")
    sock.sendall(b"joes\r\n")
    assert b"Login OK.  Initiating SIP" in read_until(sock, b"SIP\r\n")
    sock.sendall(b"6300020261129    120000          AOWEL|AA23529000000001|AD1234|\r\n")
    answer = read_until(sock, b"\r\n")
    assert answer.startswith(b"64"), answer
    assert b"AEAda Lovelace|" in answer and b"CQY|" in answer
    sock.close()


def test_telnet_three_failed_attempts_close(gateway):
    sock = socket.create_connection(("127.0.0.1", gateway.ports["telnet"]))
    read_until(sock, b"login: ")
    for _ in range(3):
        sock.sendall(b"joe\r\n")
        read_until(sock, b"password: ")
        sock.sendall(b"bad\r\n")
        data = read_until(sock, b"Invalid login")
        assert b"Invalid login" in data
    assert closed_by_server(sock)


def test_passwords_never_reach_the_logs(gateway):
    with gateway.logged_in() as client:
        client.request("6300020261129    120000          AOWEL|AA23529000000001|AD1234|ACsecret|")
    log = gateway.read_log()
    assert "INPUT MSG" in log
    assert "COjoes" not in log and "AD1234" not in log and "ACsecret" not in log


def test_the_kiosk_that_sends_nothing_is_timed_out_in_login(make_gateway):
    def short_timeout(tree, gw):
        for service in tree.iter("{*}service"):
            service.set("timeout", "1")

    gw = make_gateway(customise=short_timeout)
    sock = socket.create_connection(("127.0.0.1", gw.ports["raw"]))
    assert closed_by_server(sock, timeout=10)


def test_a_client_gone_mid_request_does_not_hurt_the_server(gateway):
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", gateway.ports["raw"]))
        sock.sendall(b"9300CNjoe|COjoes|CP|\r11YN")
        sock.close()
    with gateway.logged_in() as client:
        assert client.request("9900302.00").startswith("98")


def test_client_error_raises_on_closed_connection(gateway):
    client = SIPClient("127.0.0.1", gateway.ports["raw"])
    client.send_raw(b"2300020261129    120000AOWEL|AA1|\r")
    with pytest.raises(SIPError):
        client.read_line()


def test_sip_over_tls_with_the_shipped_listener(gateway):
    import ssl

    context = ssl.create_default_context(cafile=str(gateway.pki.ca_cert))
    with gateway.client("tls", ssl_context=context, server_hostname="localhost") as client:
        assert client.sock.version() in ("TLSv1.2", "TLSv1.3")
        assert client.login("joe", "joes") == "941"
        answer = client.request("6300020261129    120000          AOWEL|AA23529000000001|AD1234|")
        assert answer.startswith("64") and "CQY|" in answer
