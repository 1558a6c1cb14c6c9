"""SIPconfig.xml ``<login>`` options end to end: parsed from the file, honoured by the ACS and
visible in the bytes a kiosk reads over a real socket (koha-sip-and-ldap.md sections 1.5, 1.6
and 4; 3M SIP2 2.00 "Error detection" for checksums over the encoded bytes).

Several accounts share one gateway start: each test adds ``<login>`` elements (staff patrons
with joe's password and permissions are added to the database before start) and drives them.
"""

from __future__ import annotations

from lxml import etree

from koha_gateway.sip2.checksum import checksum
from koha_gateway.sip2.codec import parse
from tests.gateway import sip_date

NOW = sip_date()  # the pinned instant the test gateways run at
BLANK = " " * 18
ADA = "23529000000001"
GRACE = "23529000000002"
NS = "{http://openncip.org/acs-config/1.0/}"


def item(n: int) -> str:
    return f"399990000000{n:02d}"


def fields(answer: str) -> dict[str, list[str]]:
    """Every variable field of a response in wire order, repeated ids included."""
    from koha_gateway.sip2.codec import _ALL_LAYOUTS

    text = answer.rstrip("\r\n")
    end = _ALL_LAYOUTS[text[:2]][2]
    out: dict[str, list[str]] = {}
    for piece in text[end:].split("|"):
        if len(piece) >= 2:
            out.setdefault(piece[:2], []).append(piece[2:])
    return out


def execute(url: str, *statements: tuple[str, tuple]) -> None:
    """Run data-changing statements in one transaction of the gateway's database."""
    from koha_gateway.db.engine import Database

    db = Database.from_url(url)
    try:

        def work(txn):
            for sql, params in statements:
                txn.execute(sql, params)

        db.run_blocking(work)
    finally:
        db.close()


def accounts(*specs: dict, top: list | None = None):
    """A ``customise`` function adding one ``<login>`` per spec (``children``: a list of
    ``(tag, attributes or text-dict)``) and copying joe's staff patron for each new id."""

    def customise(tree, gateway):
        parent = next(e for e in tree.iter(f"{NS}accounts"))
        statements = []
        for number, spec in enumerate(specs):
            spec = dict(spec)
            children = spec.pop("children", [])
            login = etree.SubElement(parent, f"{NS}login")
            login.set("password", "joes")
            login.set("institution", "WEL")
            for name, value in spec.items():
                login.set(name, value)
            for tag, attributes in children:
                if tag == "syspref_overrides":
                    element = etree.SubElement(login, f"{NS}{tag}")
                    for pref, value in attributes.items():
                        etree.SubElement(element, f"{NS}{pref}").text = value
                else:
                    etree.SubElement(login, f"{NS}{tag}", attributes)
            statements.append(
                (
                    "INSERT INTO borrowers (cardnumber, userid, password, firstname, surname, "
                    "branchcode, categorycode, dateexpiry, flags) SELECT ?, ?, password, "
                    "firstname, surname, branchcode, categorycode, dateexpiry, flags "
                    "FROM borrowers WHERE userid = 'joe'",
                    (f"staff-{number}-{spec['id']}", spec["id"]),
                )
            )
        if top:
            overrides = etree.Element(f"{NS}syspref_overrides")
            for pref, value in top:
                etree.SubElement(overrides, f"{NS}{pref}").text = value
            parent.addnext(overrides)
        execute(gateway.database_url, *statements)

    return customise


def raw_exchange(
    client, text: str, *, encoding: str, seq: int = 0, terminator: bytes = b"\r\n"
) -> bytes:
    """Send ``text`` with AY/AZ and return the raw response bytes up to ``terminator``."""
    data = (text + f"AY{seq}AZ").encode(encoding)
    client.send_raw(data + checksum(data).encode() + b"\r")
    return raw_exchange_bytes(client, terminator)


def raw_exchange_bytes(client, terminator: bytes) -> bytes:
    """The next response's raw bytes up to and including ``terminator``."""
    buffer = b""
    while not buffer.endswith(terminator):
        chunk = client.sock.recv(1)
        assert chunk, buffer
        buffer += chunk
    return buffer


def assert_checksum(line: bytes) -> bytes:
    body = line.rstrip(b"\r\n")
    assert body[-9:-7] == b"AY" and body[-6:-4] == b"AZ", body
    assert checksum(body[:-4]) == body[-4:].decode(), body
    return body


# --- output encoding, terminator, escaping, field filters ------------------------------------


def test_encodings_terminators_and_output_filters(make_gateway):
    gateway = make_gateway(
        customise=accounts(
            {"id": "cp", "encoding": "cp850", "terminator": "CR"},
            {
                "id": "asc",
                "encoding": "ascii",
                "allow_fields": "AA,AE,BL,AO,AY,AZ",
                "delimiter": "^",
            },
            {
                "id": "lat",
                "encoding": "latin-1",
                "hide_fields": "AE,BD",
                "allow_fields": "AA,AE,BD,AO",  # hide_fields wins over allow_fields
            },
            {
                "id": "conv",
                "convert_nonprinting_characters": " -- ",
                "children": [
                    ("screen_msg_regex", {"find": "Greetings from Koha. ", "replace": ""}),
                    # Perl syntax: named groups and $+{name}
                    ("screen_msg_regex", {"find": "(?<a>on) (?<b>file)", "replace": "$+{b} ${1}!"}),
                ],
            },
        )
    )
    execute(
        gateway.database_url,
        (
            "UPDATE borrowers SET surname = ?, opacnote = ? WHERE cardnumber = ?",
            ("Lövelace|Byron", "Card\ton file", ADA),
        ),
    )
    request = f"63000{NOW}          AOWEL|AA{ADA}|AD1234|"

    with gateway.logged_in("cp", "joes") as client:
        line = raw_exchange(client, request, encoding="cp850", terminator=b"\r")
        assert line.endswith(b"\r") and not line.endswith(b"\r\n")
        body = assert_checksum(line)
        assert "Lövelace&#124;Byron".encode("cp850") in body  # | inside a value is escaped
        assert b"\x94" in body  # o-umlaut in code page 850
        # requests are read in the account's encoding too; the echo is the same bytes
        echo = assert_checksum(
            raw_exchange(
                client, f"23000{NOW}AOWEL|AAnöbody|AC|", encoding="cp850", seq=1, terminator=b"\r"
            )
        )
        assert b"|AAn\x94body|" in echo and echo.endswith(b"AY1" + echo[-6:])

    with gateway.logged_in("asc", "joes") as client:
        body = assert_checksum(raw_exchange(client, request, encoding="ascii"))  # CRLF default
        assert b"AEAda L?velace&#124;Byron|" in body
        assert {fid for fid, _ in parse(body.decode(), responses=True).fields} <= {
            "AA",
            "AE",
            "BL",
            "AO",
            "AY",
            "AZ",
        }
        assert b"|BD" not in body and b"|AF" not in body

    with gateway.logged_in("lat", "joes") as client:
        client.send_raw(b"9900302.00AY2AZ0000\r")  # wrong checksum on a CRLF account
        assert raw_exchange_bytes(client, b"\r") == b"96AZFEF6\r"  # a bare CR, as Koha
        body = assert_checksum(raw_exchange(client, request, encoding="latin-1"))
        assert body.startswith(b"64")  # nothing (no LF) was left over from the 96
        assert b"|AE" not in body and b"|BD" not in body and b"|AA" + ADA.encode() in body
        assert b"\xf6" not in body  # the only non-ASCII text was in the hidden AE
        assert b"|BL" not in body and b"|AF" not in body  # not in allow_fields

    with gateway.logged_in("conv", "joes") as client:
        answer = client.request(f"63000{NOW}          AOWEL|AA{ADA}|")
        f = fields(answer)
        assert f["AF"] == ["Card -- file on! -- Patron has overdues"], f["AF"]

    with gateway.logged_in("joe", "joes", encoding="utf-8") as client:
        body = assert_checksum(raw_exchange(client, request, encoding="utf-8"))
        assert "AEAda Lövelace&#124;Byron|".encode() in body  # two bytes for the ö
        answer = client.request(f"23000{NOW}AOWEL|AA{ADA}|AC|")
        assert fields(answer)["AE"] == ["Ada Lövelace|Byron".replace("|", "&#124;")]


# --- patron options: 23/24, 63/64, 25/26 ------------------------------------------------------


def test_patron_fields_templates_and_branch_options(make_gateway):
    gateway = make_gateway(
        customise=accounts(
            {
                "id": "pat",
                "institution": "KIL",
                "send_patron_home_library_in_af": "1",
                "patron_branchcode_in_ao": "1",
                "allow_empty_passwords": "1",
                "ae_field_template": "[% patron.get_column('surname') | upper %], "
                "[% patron.firstname %]",
                "av_field_template": "[% accountline.description %]="
                "[% accountline.amountoutstanding | format('%.2f') %]",
                "children": [
                    ("patron_attribute", {"field": "XY", "code": "LOCKER"}),
                    ("custom_patron_field", {"field": "DE", "template": "[% patron.dateexpiry %]"}),
                    ("custom_patron_field", {"field": "ZZ", "template": "[% patron.nosuch %]"}),
                ],
            },
        )
    )
    execute(
        gateway.database_url,
        (
            "INSERT INTO borrower_attribute_types (code, description, repeatable) "
            "VALUES ('LOCKER', 'Locker', 1)",
            (),
        ),
        (
            "INSERT INTO borrower_attributes (borrowernumber, code, attribute) SELECT "
            "borrowernumber, 'LOCKER', 'L-12' FROM borrowers WHERE cardnumber = ?",
            (ADA,),
        ),
        (
            "INSERT INTO borrower_attributes (borrowernumber, code, attribute) SELECT "
            "borrowernumber, 'LOCKER', 'L-13' FROM borrowers WHERE cardnumber = ?",
            (ADA,),
        ),
    )
    expiry = gateway.query("SELECT dateexpiry FROM borrowers WHERE cardnumber = ?", (ADA,))
    with gateway.logged_in("pat", "joes") as client:
        info = fields(client.request(f"63000{NOW}          AOKIL|AA{ADA}|AD|"))
        assert info["CQ"] == ["Y"]  # allow_empty_passwords: an empty AD is valid in 63
        assert info["AO"] == ["WEL"]  # patron_branchcode_in_ao: the patron's home library
        assert info["AE"] == ["LOVELACE, Ada"]
        assert info["AF"][-1] == "WEL"  # send_patron_home_library_in_af: a second AF
        assert sorted(info["XY"]) == ["L-12", "L-13"]
        assert info["DE"] == [str(expiry[0]["dateexpiry"])[:10]]
        assert "ZZ" not in info  # an empty custom field is not sent

        status = client.request(f"23000{NOW}AOKIL|AA{ADA}|AC|AD|")
        status_fields = fields(status)
        assert status_fields["CQ"] == ["N"]  # 23 ignores allow_empty_passwords, as Koha
        assert status_fields["AO"] == ["KIL"]  # 24 echoes the request's AO
        assert status_fields["AE"] == ["LOVELACE, Ada"]
        assert status_fields["AF"][-1] == "WEL"
        assert sorted(status_fields["XY"]) == ["L-12", "L-13"]

        fines = fields(client.request(f"63000{NOW}   Y      AOKIL|AA{GRACE}|AD1234|"))
        assert fines["AV"] and all("=" in line for line in fines["AV"]), fines["AV"]
        assert sum(float(line.rsplit("=", 1)[1]) for line in fines["AV"]) == 12.0

        enabled = fields(client.request(f"25{NOW}AOWEL|AA{ADA}|AD1234|"))
        assert enabled["AE"] == ["LOVELACE, Ada"]
        assert enabled["AO"] == ["KIL"]  # 26 and 36 send the account's institution
        assert fields(client.request(f"35{NOW}AOWEL|AA{ADA}|"))["AO"] == ["KIL"]
        assert fields(client.request(f"23000{NOW}AOWEL|AA{ADA}|AC|"))["AO"] == ["WEL"]  # echo

        unknown = client.request(f"63000{NOW}          AOKIL|AAnobody|AD|")
        assert unknown.startswith("64YYYY" + " " * 10 + "000"), unknown
        assert unknown[37:61] == "0000" * 6, unknown
        assert fields(unknown)["AF"][0] == "Invalid cardnumber"


# --- item options: 17/18, 11/12, 09/10 --------------------------------------------------------


def test_item_fields_due_dates_and_checkin_options(make_gateway):
    gateway = make_gateway(
        customise=accounts(
            {
                "id": "itm",
                "format_due_date": "1",
                "cr_item_field": "itype",
                "checked_in_ok": "1",
                "cv_send_00_on_success": "1",
                "ct_always_send": "1",
                "lost_status_for_missing": "1",
                "inhouse_item_types": "BK",
                # Koha's example template, with IF
                "da_field_template": "[% patron.surname %][% IF patron.firstname %], "
                "[% patron.firstname %][% END %] ([% patron.cardnumber %])",
                "children": [
                    ("item_field", {"field": "ZY", "code": "permanent_location"}),
                    ("item_field", {"field": "ZT", "code": "effective_itemtype"}),
                    ("custom_item_field", {"field": "IN", "template": "#[% item.barcode %]"}),
                    ("sort_bin_mapping", {"mapping": "WEL:itype:eq:BK:7"}),
                    ("syspref_overrides", {"dateformat": "metric"}),
                ],
            },
            {"id": "plain"},
            top=[("dateformat", "us")],
        )
    )
    due = gateway.query(
        "SELECT date_due FROM issues JOIN items USING (itemnumber) WHERE barcode = ?", (item(6),)
    )[0]["date_due"]
    iso = str(due)[:10]
    year, month, day = iso.split("-")
    with gateway.logged_in("itm", "joes") as client:
        info = fields(client.request(f"17{NOW}AOWEL|AB{item(6)}|"))
        assert info["AH"] == [f"{day}/{month}/{year} 23:59"]  # account dateformat wins
        assert info["CR"] == ["BK"]  # cr_item_field names an items column
        assert info["ZY"] == ["GEN"] and info["IN"] == [f"#{item(6)}"]
        assert info["ZT"] == ["BK"]  # a Koha::Item accessor that is not an items column
        lost = client.request(f"17{NOW}AOWEL|AB{item(10)}|")
        assert lost[2:4] == "13"  # lost_status_for_missing: itemlost 1 is "missing"

        out = client.request(f"11YN{NOW}{BLANK}AOWEL|AA{ADA}|AB{item(1)}|AC|")
        assert out.startswith("121NN") and out[5] == "N", out  # BK is in-house: desensitize N
        out_fields = fields(out)
        assert "/" in out_fields["AH"][0] and out_fields["ZY"] == ["GEN"]
        assert out_fields["IN"] == [f"#{item(1)}"]

        back = client.request(f"09N{NOW}{NOW}AOWEL|APWEL|AB{item(1)}|AC|")
        assert back.startswith("101YN"), back
        back_fields = fields(back)
        assert back_fields["CV"] == ["00"] and back_fields["CT"] == [""]
        assert back_fields["CL"] == ["7"] and back_fields["IN"] == [f"#{item(1)}"]

        again = client.request(f"09N{NOW}{NOW}AOWEL|APWEL|AB{item(2)}|AC|")
        assert again.startswith("101YN"), again  # checked_in_ok: not on loan is fine
        assert "AF" not in fields(again)

        held = fields(client.request(f"09N{NOW}{NOW}AOWEL|APWEL|AB{item(12)}|AC|"))
        assert held["CV"] == ["01"] and held["CY"] == [GRACE]
        assert held["DA"] == [f"Hopper, Grace ({GRACE})"]

    with gateway.logged_in("plain", "joes") as client:
        info = fields(client.request(f"17{NOW}AOWEL|AB{item(6)}|"))
        assert info["AH"][0] == f"{iso.replace('-', '')}    235900"  # format_due_date off
        assert "ZY" not in info and "IN" not in info
        back = client.request(f"09N{NOW}{NOW}AOWEL|APWEL|AB{item(3)}|AC|")
        assert back.startswith("100") and back[5] == "Y", back  # not on loan: failed, alert
        assert "CV" not in fields(back) and "CT" not in fields(back)
        assert client.request(f"17{NOW}AOWEL|AB{item(10)}|")[2:4] == "12"


def test_blocking_options_checkin_holds_alerts_and_item_types(make_gateway):
    gateway = make_gateway(
        customise=accounts(
            {
                "id": "blk",
                "holds_block_checkin": "1",
                "cv_triggers_alert": "1",
                "blocked_item_types": "REF|DVD",
                "inhouse_patron_categories": "PT",
            },
        )
    )
    with gateway.logged_in("blk", "joes") as client:
        # blocked_item_types is checked before "not for loan"
        refused = client.request(f"11YN{NOW}{BLANK}AOWEL|AA{ADA}|AB{item(11)}|AC|")
        assert refused.startswith("120"), refused
        assert fields(refused)["AF"] == [
            "Item type cannot be checked out at this checkout location"
        ]
        out = client.request(f"11YN{NOW}{BLANK}AOWEL|AA{ADA}|AB{item(1)}|AC|")
        assert out.startswith("121") and out[5] == "N", out  # inhouse_patron_categories

        blocked = client.request(f"09N{NOW}{NOW}AOWEL|APWEL|AB{item(12)}|AC|")
        assert blocked.startswith("100"), blocked
        blocked_fields = fields(blocked)
        assert blocked_fields["CV"] == ["99"]
        assert blocked_fields["AF"] == ["Item is on hold, please return to circulation desk"]
        waiting = gateway.query(
            "SELECT found FROM reserves JOIN borrowers USING (borrowernumber) WHERE cardnumber = ?",
            (GRACE,),
        )
        assert waiting == [{"found": None}]  # the hold was not captured

        quiet = client.request(f"09N{NOW}{NOW}AOWEL|APWEL|AB{item(3)}|AC|")
        assert quiet.startswith("100") and quiet[5] == "N", quiet  # cv_triggers_alert


def test_fee_paid_writeoff_and_overpayment(make_gateway):
    add_accounts = accounts(
        {"id": "pay", "payment_type_writeoff": "06", "disallow_overpayment": "1"},
    )

    def customise(tree, gateway):
        add_accounts(tree, gateway)
        institutions = next(tree.iter(f"{NS}institutions"))
        etree.SubElement(institutions, f"{NS}institution", {"id": "XYZ"})
        parent = next(tree.iter(f"{NS}accounts"))
        etree.SubElement(parent, f"{NS}login", {"id": "ghost", "institution": "XYZ"})

    gateway = make_gateway(customise=customise)
    log = gateway.read_log()  # start-up warnings (not errors) of Koha 25.11
    assert "institution 'XYZ' is not a branchcode in the database" in log
    assert "account 'ghost' has no patron with that userid" in log
    owed = (
        "SELECT SUM(amountoutstanding) AS owed FROM accountlines JOIN borrowers USING "
        "(borrowernumber) WHERE cardnumber = ?"
    )
    with gateway.logged_in("pay", "joes") as client:
        too_much = client.request(f"37{NOW}0100NZDBV50.00|AOWEL|AA{GRACE}|")
        assert too_much.startswith("38N"), too_much
        assert float(gateway.query(owed, (GRACE,))[0]["owed"]) == 12.0

        written_off = client.request(f"37{NOW}0106NZDBV2.00|AOWEL|AA{GRACE}|BKw-1|")
        assert written_off.startswith("38Y"), written_off
        credits = gateway.query(
            "SELECT credit_type_code FROM accountlines JOIN borrowers USING (borrowernumber) "
            "WHERE cardnumber = ? AND credit_type_code IS NOT NULL",
            (GRACE,),
        )
        assert [row["credit_type_code"] for row in credits] == ["WRITEOFF"]
        assert float(gateway.query(owed, (GRACE,))[0]["owed"]) == 10.0

    with gateway.logged_in() as client:  # joe: overpayment is a credit
        paid = client.request(f"37{NOW}0100NZDBV15.00|AOWEL|AA{GRACE}|")
        assert paid.startswith("38Y"), paid
        assert float(gateway.query(owed, (GRACE,))[0]["owed"]) == -5.0


def test_status_flags_screen_messages_and_hold_capture_options(make_gateway):
    gateway = make_gateway(
        customise=accounts(
            {
                "id": "more",
                "show_checkin_message": "1",
                "show_outstanding_amount": "1",
                "holds_get_captured": "0",
                "seen_on_item_information": "mark_found",
                "overdues_block_checkout": "1",
                "lost_block_checkout": "1",
                "patron_restriction_blocks_inet": "0",
                "children": [("syspref_overrides", {"OverduesBlockCirc": "block"})],
            },
        )
    )
    patron_info = f"63000{NOW}          AOWEL|AA{{}}|"
    with gateway.logged_in() as client:  # joe: the defaults
        ada = client.request(patron_info.format(ADA))
        assert ada[2 + 6] == " " and ada[2 + 9] == " ", ada
        assert fields(client.request(patron_info.format("23529000000004")))["PI"] == ["N"]
    with gateway.logged_in("more", "joes") as client:
        ada = client.request(patron_info.format(ADA))
        assert ada[2 + 6] == "Y", ada  # overdues_block_checkout with OverduesBlockCirc=block
        assert ada[2 + 9] == " ", ada
        edsger = fields(client.request(patron_info.format("23529000000004")))
        assert edsger["PI"] == ["Y"]  # patron_restriction_blocks_inet="0"

        grace = client.request(f"11YN{NOW}{BLANK}AOWEL|AA{GRACE}|AB{item(2)}|AC|")
        assert fields(grace)["AF"] == ["Patron has fines - You owe $12.00."], grace

        execute(
            gateway.database_url,
            ("UPDATE items SET itemlost = 2 WHERE barcode = ?", (item(6),)),
        )
        assert client.request(patron_info.format(ADA))[2 + 9] == "Y"  # lost_block_checkout

        back = client.request(f"09N{NOW}{NOW}AOWEL|APWEL|AB{item(7)}|AC|")
        assert back.startswith("101"), back
        assert fields(back)["AF"][0].startswith("Item checked-in: Wellington Central - GEN."), back
        assert "You owe $2.50 for this item." in fields(back)["AF"][0], back

        held = fields(client.request(f"09N{NOW}{NOW}AOWEL|APWEL|AB{item(12)}|AC|"))
        assert held["CV"] == ["01"] and held["CY"] == [GRACE]
        found = gateway.query(
            "SELECT found FROM reserves JOIN borrowers USING (borrowernumber) WHERE cardnumber = ?",
            (GRACE,),
        )
        assert found == [{"found": None}]  # holds_get_captured="0": alerted, not captured

        # mark_found clears itemlost before the status is read, so the item is available
        assert client.request(f"17{NOW}AOWEL|AB{item(10)}|")[2:4] == "03"
        lost = gateway.query("SELECT itemlost FROM items WHERE barcode = ?", (item(10),))
        assert lost == [{"itemlost": 0}]  # seen_on_item_information="mark_found"


def test_previous_checkout_materials_register_lost_and_sort_bin_options(make_gateway):
    prefs = {"CheckPrevCheckout": "hardyes", "CircConfirmItemParts": "1"}
    gateway = make_gateway(
        customise=accounts(
            {
                "id": "prev",
                "prevcheckout_block_checkout": "1",
                "register_id": "3",
                "lost_block_checkout": "1",
                "lost_block_checkout_value": "2",
                "seen_on_item_information": "keep_lost",
                "children": [("syspref_overrides", prefs)],
            },
            {
                "id": "mat",
                "allow_additional_materials_checkout": "1",
                "children": [
                    ("sort_bin_mapping", {"mapping": "WEL:itype:eq:BK:9"}),
                    ("syspref_overrides", {"CircConfirmItemParts": "1"}),
                ],
            },
            {"id": "pw", "password": "not-joes"},
            top=[("SIP2SortBinMapping", "KIL:itype:eq:BK:1\n# comment\nWEL:location:eq:GEN:3")],
        )
    )
    execute(
        gateway.database_url,
        ("UPDATE items SET materials = 'CD-ROM' WHERE barcode = ?", (item(2),)),
    )
    checkout = f"11YN{NOW}{BLANK}AOWEL|AA{ADA}|AB{{}}|AC|"
    checkin = f"09N{NOW}{NOW}AOWEL|APWEL|AB{{}}|AC|"
    with gateway.logged_in("prev", "joes") as client:
        assert client.request(checkout.format(item(1))).startswith("121")
        back = fields(client.request(checkin.format(item(1))))
        assert back["CL"] == ["3"]  # the global SIP2SortBinMapping override
        # a new transaction date: the same bytes again would be a resend of the first
        again = client.request(checkout.format(item(1)).replace(NOW, sip_date(minutes=5)))
        assert again.startswith("120"), again
        assert fields(again)["AF"] == ["This item was previously checked out by you"]

        parts = client.request(checkout.format(item(2)))
        assert parts.startswith("120"), parts
        assert fields(parts)["AF"] == ["Item must be checked out at a circulation desk"]

        paid = client.request(f"37{NOW}0100NZDBV1.00|AOWEL|AA{GRACE}|")
        assert paid.startswith("38Y"), paid
        registers = gateway.query(
            "SELECT register_id FROM accountlines WHERE credit_type_code = 'PAYMENT'"
        )
        assert [row["register_id"] for row in registers] == [3]

        patron_info = f"63000{NOW}          AOWEL|AA{ADA}|"
        execute(
            gateway.database_url, ("UPDATE items SET itemlost = 1 WHERE barcode = ?", (item(6),))
        )
        assert client.request(patron_info)[2 + 9] == " "  # itemlost 1 < lost_block_checkout_value
        execute(
            gateway.database_url, ("UPDATE items SET itemlost = 2 WHERE barcode = ?", (item(6),))
        )
        assert client.request(patron_info)[2 + 9] == "Y"

        before = gateway.query("SELECT datelastseen FROM items WHERE barcode = ?", (item(10),))
        assert client.request(f"17{NOW}AOWEL|AB{item(10)}|")[2:4] == "12"
        after = gateway.query(
            "SELECT itemlost, datelastseen FROM items WHERE barcode = ?", (item(10),)
        )
        assert after[0]["itemlost"] == 1  # keep_lost
        assert str(after[0]["datelastseen"]) > str(before[0]["datelastseen"])

    with gateway.logged_in("mat", "joes") as client:
        out = client.request(checkout.format(item(2)))
        assert out.startswith("121"), out
        assert fields(out)["AF"] == ["Item has additional materials: CD-ROM"]
        back = fields(client.request(checkin.format(item(3))))
        assert back.get("CL") == ["9"]  # the account mapping replaces the preference

    with gateway.client() as client:  # a password in SIPconfig.xml must match as well
        assert client.login("pw", "joes") == "940"
        assert client.login("pw", "not-joes") == "940"


# --- listener options that act on accounts: client_timeout, telnet ---------------------------


def _read_until(sock, marker: bytes, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while marker not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_idle_timeout_and_telnet_accounts(make_gateway):
    import socket

    def customise(tree, gateway):
        for service in tree.iter(f"{NS}service"):
            if service.get("transport") == "RAW" and not service.get("tls_certificate"):
                service.set("client_timeout", "1")
        accounts({"id": "tcr", "terminator": "CR"}, {"id": "tpw", "password": "other"})(
            tree, gateway
        )

    gateway = make_gateway(customise=customise)
    with gateway.logged_in() as client:
        assert client.request("9900302.00").startswith("98")
        # Idle: the server closes the connection after client_timeout (1 s).
        client.sock.settimeout(10)
        try:
            assert client.sock.recv(1) == b""
        except ConnectionResetError:
            pass

    sock = socket.create_connection(("127.0.0.1", gateway.ports["telnet"]))
    try:
        _read_until(sock, b"login: ")
        sock.sendall(b"tcr\r\n")
        _read_until(sock, b"password: ")
        sock.sendall(b"joes\r\n")
        assert b"Login OK.  Initiating SIP" in _read_until(sock, b"SIP")
        sock.sendall(f"23000{NOW}AOWEL|AA{ADA}|AC|\r".encode())
        answer = _read_until(sock, b"AOWEL|\r")
        assert answer.endswith(b"AOWEL|\r"), answer  # terminator="CR" on telnet too
    finally:
        sock.close()

    sock = socket.create_connection(("127.0.0.1", gateway.ports["telnet"]))
    try:
        _read_until(sock, b"login: ")
        sock.sendall(b"tpw\r\n")
        _read_until(sock, b"password: ")
        sock.sendall(b"joes\r\n")  # the database password, not the one in SIPconfig.xml
        assert b"Invalid login" in _read_until(sock, b"Invalid login")
    finally:
        sock.close()
