"""``koha-gateway-client`` against a running gateway: every message, decoded and as JSON, over
RAW, TLS and telnet, and the messages a person gets when something is wrong."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from importlib import metadata

import pytest

from koha_gateway.sip2.checksum import checksum
from koha_gateway.sipclient import MESSAGES, main, split_messages
from tests.gateway import ROOT, free_port, shared_pki

ADA = "23529000000001"
GRACE = "23529000000002"
ALAN = "23529000000003"


def item(n: int) -> str:
    return f"399990000000{n:02d}"


@pytest.fixture
def engine():
    """The client does not depend on the database engine: SQLite only (the engines are tested
    message by message in test_e2e_messages.py)."""
    return "sqlite"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def login(gateway, kind: str = "raw") -> list[str]:
    return ["--port", str(gateway.ports[kind]), "--login", "joe", "--password", "joes"]


# Every message of the client, in an order that makes each answer known from the demo data.
SESSION = [
    ("sc-status",),
    ("patron-status", "--patron", ADA, "--patron-password", "1234"),
    ("patron-info", "--patron", ADA, "--patron-password", "1234", "--summary", "hold"),
    ("checkout", "--patron", ADA, "--item", item(1)),
    ("item-info", "--item", item(1)),
    ("checkin", "--item", item(1)),
    ("item-info", "--item", item(10)),
    ("item-status-update", "--item", item(3), "--item-properties", "shelf 4B"),
    ("renew", "--patron", ADA, "--item", item(6)),
    ("renew-all", "--patron", ADA),
    ("hold", "--patron", ADA, "--item", item(2), "--pickup-location", "WEL"),
    ("fee-paid", "--patron", GRACE, "--fee-amount", "12.00", "--transaction-id", "tx-1"),
    ("block-patron", "--patron", ALAN, "--message", "card left in machine"),
    ("patron-enable", "--patron", ALAN, "--patron-password", "1234"),
    ("end-session", "--patron", ADA),
    ("checkin", "--item", item(12)),
    ("raw", "9900302.00"),
]


def session_argv() -> list[str]:
    return [token for message in SESSION for token in message]


def test_every_message_is_covered():
    assert {m[0] for m in SESSION} == set(MESSAGES)


def test_every_message_decoded_over_raw(gateway, capsys):
    status, out, err = run(capsys, *login(gateway), "--institution", "WEL", *session_argv())
    assert status == 0, out + err
    blocks = out.split("\n> ")
    assert len(blocks) == 1 + len(SESSION)  # the login, then one block per message
    assert "94 LoginResponse" in blocks[0] and "    ok: 1 (yes)" in blocks[0]
    by_message = dict(zip(range(len(SESSION)), blocks[1:]))
    expected = [
        ["98 ACSStatus", "online status: Y (yes)", "BX supported messages: YYYY"],
        ["24 PatronStatusResponse", "BL valid patron: Y (yes)", "CQ valid patron password: Y"],
        [
            "64 PatronInformationResponse",
            "hold items count: 0001 (1)",
            f"AS hold items: {item(8)}",
            "- charge privileges denied",
        ],
        ["12 CheckoutResponse", "    ok: 1 (yes)", f"AB item identifier: {item(1)}"],
        ["18 ItemInformationResponse", "circulation status: 04 (charged)", "AH due date: "],
        ["10 CheckinResponse", "    ok: 1 (yes)"],
        ["circulation status: 12 (lost)"],
        ["20 ItemStatusUpdateResponse", "item properties ok: 1 (yes)", "CH item properties"],
        ["30 RenewResponse", "    ok: 1 (yes)"],
        ["66 RenewAllResponse"],
        ["16 HoldResponse", "    ok: 1 (yes)"],
        ["38 FeePaidResponse", "payment accepted: Y (yes)", "BK transaction id: tx-1"],
        ["24 PatronStatusResponse", "Y charge privileges denied"],
        ["26 PatronEnableResponse"],
        ["36 EndPatronSessionResponse", "end session: Y (yes)", "AF screen message: Thank you!"],
        [
            "10 CheckinResponse",
            "CV alert type: 01 (hold for this library)",
            f"CY hold patron id: {GRACE}",
        ],
        ["98 ACSStatus"],
    ]
    for index, wanted in enumerate(expected):
        for text in wanted:
            assert text in by_message[index], (SESSION[index], by_message[index])
    # dates are decoded, passwords never echoed
    assert "transaction date: " in out and "(20" in out
    assert "CO****" in blocks[0] and "joes" not in out
    assert "AD****" in by_message[1] and "1234" not in by_message[1].split("\n")[0]
    # error detection is on: every answer carries AY/AZ and its checksum was checked
    assert out.count("AZ checksum: ") == len(SESSION) + 1


def test_every_message_as_json(gateway, capsys):
    status, out, _ = run(capsys, *login(gateway), "--json", "--institution", "WEL", *session_argv())
    assert status == 0
    document = json.loads(out)
    assert document["error"] is None and document["status"] == 0
    exchanges = document["exchanges"]
    assert [e["code"] for e in exchanges] == [
        "94",
        "98",
        "24",
        "64",
        "12",
        "18",
        "10",
        "18",
        "20",
        "30",
        "66",
        "16",
        "38",
        "24",
        "26",
        "36",
        "10",
        "98",
    ]
    for exchange in exchanges:
        assert exchange["problems"] == []
        assert exchange["sequence"] is not None and exchange["checksum"] is not None
    info = exchanges[5]
    fixed = {f["name"]: f for f in info["fixed"]}
    assert fixed["circulation_status"] == {
        "name": "circulation_status",
        "value": "04",
        "meaning": "charged",
        "id": None,
        "flags": None,
    }
    patron = exchanges[3]
    status_flags = {f["name"]: f for f in patron["fixed"]}["patron_status"]["flags"]
    assert len(status_flags) == 14 and status_flags[0] == ["charge privileges denied", False]
    fields = {f["id"]: f for f in patron["fields"]}
    assert fields["AE"]["name"] == "personal_name" and fields["AE"]["value"] == "Ada Lovelace"
    bx = {f["id"]: f for f in exchanges[1]["fields"]}["BX"]
    assert len(bx["flags"]) == 16
    assert "1234" not in exchanges[2]["request"] and "AD****" in exchanges[2]["request"]


def test_over_tls_with_the_ca(gateway, capsys):
    pki = shared_pki()
    argv = [*login(gateway, "tls"), "--tls", "--cafile", str(pki.ca_cert), "--host", "localhost"]
    status, out, err = run(
        capsys,
        *argv,
        "patron-info",
        "--patron",
        ADA,
        "--institution",
        "WEL",
        "checkout",
        "--patron",
        ADA,
        "--item",
        item(2),
    )
    assert status == 0, out + err
    assert "64 PatronInformationResponse" in out and "AE personal name: Ada Lovelace" in out
    assert "12 CheckoutResponse" in out and "    ok: 1 (yes)" in out


def test_tls_without_the_ca_says_so(gateway, capsys):
    status, out, err = run(
        capsys, "--port", str(gateway.ports["tls"]), "--tls", "--host", "localhost", "sc-status"
    )
    assert status == 1
    assert "TLS: the server's certificate was not accepted" in err and "--cafile" in err


def test_over_telnet(gateway, capsys):
    status, out, err = run(
        capsys,
        *login(gateway, "telnet"),
        "--telnet",
        "patron-status",
        "--patron",
        ADA,
        "--institution",
        "WEL",
        "--patron-password",
        "1234",
        "item-info",
        "--item",
        item(8),
    )
    assert status == 0, out + err
    assert "Login OK" in out
    assert "CQ valid patron password: Y (yes)" in out
    assert "circulation status: 08 (waiting on hold shelf)" in out


def test_refused_telnet_login(gateway, capsys):
    argv = ["--port", str(gateway.ports["telnet"]), "--telnet", "--login", "joe"]
    status, out, err = run(capsys, *argv, "--password", "wrong", "sc-status")
    assert status == 3
    assert "telnet login refused for 'joe'" in err


def test_refused_login(gateway, capsys):
    argv = ["--port", str(gateway.ports["raw"]), "--login", "nocirc", "--password", "nocirc1"]
    status, out, err = run(capsys, *argv, "sc-status")
    assert status == 3
    assert "login refused for SIP account 'nocirc'" in err and "circulate permission" in err
    assert "94 LoginResponse" in out and "ok: 0 (no)" in out


def test_without_error_detection(gateway, capsys):
    status, out, _ = run(capsys, *login(gateway), "--no-error-detection", "--json", "sc-status")
    assert status == 0
    exchanges = json.loads(out)["exchanges"]
    assert all(e["checksum"] is None and "AY" not in e["request"] for e in exchanges)


def test_connection_refused(capsys):
    port = free_port()
    status, _, err = run(capsys, "--port", str(port), "sc-status")
    assert status == 1
    assert f"cannot connect to 127.0.0.1:{port}: connection refused" in err


def test_unknown_host(capsys):
    status, _, err = run(capsys, "--host", "no-such-host.invalid", "sc-status")
    assert status == 1 and "cannot resolve host 'no-such-host.invalid'" in err


class OneShotServer:
    """A listening socket that answers the first line it reads with ``answer`` (None: closes
    the connection; b"": never answers)."""

    def __init__(self, answer: bytes | None):
        self.answer = answer
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn, _ = self.sock.accept()
        with conn:
            conn.recv(4096)
            if self.answer:
                conn.sendall(self.answer)
            if self.answer is not None:
                self.done.wait(10)

    def close(self):
        self.done.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def one_shot():
    servers = []

    def make(answer):
        servers.append(OneShotServer(answer))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def test_checksum_error_in_an_answer_is_reported(one_shot, capsys):
    body = b"98YYYNYN60000320261129    1200002.00AOWEL|BXYYYYYYYYYYYYYYYY|AY0AZ"
    good = checksum(body).encode()
    bad = b"%04X" % ((int(good, 16) + 1) & 0xFFFF)
    server = one_shot(body + bad + b"\r")
    status, out, _ = run(capsys, "--port", str(server.port), "sc-status")
    assert status == 1
    assert "! checksum error in the answer" in out
    assert "98 ACSStatus" in out  # still shown


def test_closed_connection(one_shot, capsys):
    server = one_shot(None)
    status, _, err = run(capsys, "--port", str(server.port), "sc-status")
    assert status == 1 and "the gateway closed the connection" in err


def test_timeout(one_shot, capsys):
    server = one_shot(b"")
    status, _, err = run(capsys, "--port", str(server.port), "--timeout", "0.5", "sc-status")
    assert status == 1 and "no answer from 127.0.0.1" in err and "within 0.5s" in err


def test_usage_errors(capsys):
    status, _, err = run(capsys, "checkout", "--patron", ADA)
    assert status == 2 and "checkout: --item is required" in err
    status, _, err = run(capsys, "patron-info", "--patron", ADA, "--summary", "holds")
    assert status == 2 and "--summary: unknown holds" in err


def test_split_messages_keeps_option_values():
    head, messages = split_messages(
        ["--login", "checkin", "checkin", "--item", "renew", "raw", "checkout", "sc-status"]
    )
    assert head == ["--login", "checkin"]
    assert messages == [("checkin", ["--item", "renew"]), ("raw", ["checkout"]), ("sc-status", [])]


def test_console_script(gateway):
    scripts = {e.name: e.value for e in metadata.entry_points(group="console_scripts")}
    assert scripts["koha-gateway-client"] == "koha_gateway.sipclient:main"
    result = subprocess.run(
        [sys.executable, "-m", "koha_gateway.sipclient", *login(gateway), "sc-status"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "98 ACSStatus" in result.stdout


def test_client_certificate(make_gateway, capsys):
    pki = shared_pki()

    def require_client_certificates(tree, _process):
        from tests.gateway import elements

        for service in elements(tree, "service"):
            if service.get("tls_certificate"):
                service.set("tls_client_ca", str(pki.ca_cert))

    gateway = make_gateway(customise=require_client_certificates)
    argv = [*login(gateway, "tls"), "--tls", "--cafile", str(pki.ca_cert), "--host", "localhost"]
    status, out, err = run(
        capsys,
        *argv,
        "--cert",
        str(pki.kiosk_cert("kiosk-01")),
        "--key",
        str(pki.kiosk_key("kiosk-01")),
        "sc-status",
    )
    assert status == 0, out + err
    assert "98 ACSStatus" in out
    status, out, err = run(capsys, *argv, "sc-status")
    assert status == 1
    assert "TLS" in err and "give it with --cert and --key" in err, err
