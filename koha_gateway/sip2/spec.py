"""Declarative tables of the 3M Standard Interchange Protocol 2.00 (SIP2).

Everything the codec and the session need to know about message layouts lives here, as data:

* :data:`FIELDS` -- every variable-length field identifier of 3M SIP2 2.00 ("Field
  identifiers") plus the extensions Koha reads or writes (the 3M SIP2 Extensions CR, CS, CT,
  CV, CY, DA and the Envisionware PA, PB, PC, PI fields).
* :data:`REQUESTS` and :data:`RESPONSES` -- one :class:`MessageSpec` per command code, with the
  fixed-length fields in wire order, the variable fields the message may carry, the code of the
  answer and whether the message only exists in protocol version 2.00.

Fixed-field lengths follow 3M SIP2 2.00 ("Message formats"); ``v2_only`` and the variable
fields accepted in requests follow Koha's ``C4::SIP::Sip::MsgType`` table.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "FIELDS",
    "REQUESTS",
    "RESPONSES",
    "BY_NAME",
    "Field",
    "FixedField",
    "MessageSpec",
    "lookup",
    "PATRON_STATUS_FLAGS",
    "SUPPORTED_MESSAGES",
    "SUMMARY_ITEMS",
    "CIRCULATION_STATUS",
    "SECURITY_MARKER",
    "FEE_TYPE",
    "PAYMENT_TYPE",
    "MEDIA_TYPE",
    "ALERT_TYPE",
    "HOLD_TYPE",
    "HOLD_MODE",
    "LANGUAGE",
]


@dataclass(frozen=True, slots=True)
class Field:
    """A variable-length field: two-character identifier, name, may it repeat in one message."""

    code: str
    name: str
    repeatable: bool = False


@dataclass(frozen=True, slots=True)
class FixedField:
    """A fixed-length field of a message header, in wire order."""

    name: str
    length: int


@dataclass(frozen=True, slots=True)
class MessageSpec:
    """Layout of one SIP2 message.

    ``fixed`` lists the fixed-length fields that follow the two-character command code;
    ``fields`` is the set of variable field identifiers defined for the message; ``response``
    is the command code of the answer (``None`` when the answer is not a fixed message type,
    as for 97, or for responses themselves); ``v2_only`` marks messages that do not exist in
    protocol version 1.00.
    """

    code: str
    name: str
    fixed: tuple[FixedField, ...]
    fields: frozenset[str]
    response: str | None
    v2_only: bool

    @property
    def fixed_length(self) -> int:
        """Total length of the fixed part (command code excluded)."""
        return sum(f.length for f in self.fixed)


def _fields(*rows: tuple[str, str] | tuple[str, str, bool]) -> dict[str, Field]:
    table: dict[str, Field] = {}
    for row in rows:
        code, name = row[0], row[1]
        repeatable = bool(row[2]) if len(row) > 2 else False
        if code in table:
            raise ValueError(f"duplicate field id {code}")
        table[code] = Field(code, name, repeatable)
    return table


#: 3M SIP2 2.00 "Field identifiers", then the extensions in use (3M SIP2 Extensions 1.20 and
#: Envisionware). PA is "PAC access type" in Koha; other ACSs use it for the patron expiry date.
FIELDS: dict[str, Field] = _fields(
    ("AA", "patron_identifier"),
    ("AB", "item_identifier"),
    ("AC", "terminal_password"),
    ("AD", "patron_password"),
    ("AE", "personal_name"),
    ("AF", "screen_message", True),
    ("AG", "print_line", True),
    ("AH", "due_date"),
    ("AJ", "title_identifier"),
    ("AL", "blocked_card_msg"),
    ("AM", "library_name"),
    ("AN", "terminal_location"),
    ("AO", "institution_id"),
    ("AP", "current_location"),
    ("AQ", "permanent_location"),
    ("AS", "hold_items", True),
    ("AT", "overdue_items", True),
    ("AU", "charged_items", True),
    ("AV", "fine_items", True),
    ("AY", "sequence_number"),
    ("AZ", "checksum"),
    ("BD", "home_address"),
    ("BE", "email_address"),
    ("BF", "home_phone_number"),
    ("BG", "owner"),
    ("BH", "currency_type"),
    ("BI", "cancel"),
    ("BK", "transaction_id"),
    ("BL", "valid_patron"),
    ("BM", "renewed_items", True),
    ("BN", "unrenewed_items", True),
    ("BO", "fee_acknowledged"),
    ("BP", "start_item"),
    ("BQ", "end_item"),
    ("BR", "queue_position"),
    ("BS", "pickup_location"),
    ("BT", "fee_type"),
    ("BU", "recall_items", True),
    ("BV", "fee_amount"),
    ("BW", "expiration_date"),
    ("BX", "supported_messages"),
    ("BY", "hold_type"),
    ("BZ", "hold_items_limit"),
    ("CA", "overdue_items_limit"),
    ("CB", "charged_items_limit"),
    ("CC", "fee_limit"),
    ("CD", "unavailable_hold_items", True),
    ("CF", "hold_queue_length"),
    ("CG", "fee_identifier"),
    ("CH", "item_properties"),
    ("CI", "security_inhibit"),
    ("CJ", "recall_date"),
    ("CK", "media_type"),
    ("CL", "sort_bin"),
    ("CM", "hold_pickup_date"),
    ("CN", "login_user_id"),
    ("CO", "login_password"),
    ("CP", "location_code"),
    ("CQ", "valid_patron_password"),
    # 3M SIP2 Extensions (rev 1.20), as used by Koha and sorters/AMH.
    ("CR", "collection_code"),
    ("CS", "call_number"),
    ("CT", "destination_location"),
    ("CV", "alert_type"),
    ("CY", "hold_patron_id"),
    ("DA", "hold_patron_name"),
    # SIP 2.0 Extensions (Envisionware PC reservation), as defined in Koha.
    ("PA", "pac_access_type"),
    ("PB", "patron_birth_date"),
    ("PC", "patron_class"),
    ("PI", "patron_internet_profile"),
)


def _spec(
    code: str,
    name: str,
    fixed: tuple[tuple[str, int], ...],
    fields: str,
    response: str | None,
    v2_only: bool,
) -> MessageSpec:
    fids = frozenset(fields.split())
    unknown = fids - FIELDS.keys()
    if unknown:
        raise ValueError(f"{code}: unknown field ids {sorted(unknown)}")
    return MessageSpec(
        code=code,
        name=name,
        fixed=tuple(FixedField(n, length) for n, length in fixed),
        fields=fids,
        response=response,
        v2_only=v2_only,
    )


_D = ("transaction_date", 18)

#: SC -> ACS messages (3M SIP2 2.00 "Message formats"), keyed by command code.
REQUESTS: dict[str, MessageSpec] = {
    s.code: s
    for s in (
        _spec("23", "PatronStatus", (("language", 3), _D), "AO AA AC AD", "24", False),
        _spec(
            "11",
            "Checkout",
            (("sc_renewal_policy", 1), ("no_block", 1), _D, ("nb_due_date", 18)),
            "AO AA AB AC CH AD BO BI",
            "12",
            False,
        ),
        _spec(
            "09",
            "Checkin",
            (("no_block", 1), _D, ("return_date", 18)),
            "AP AO AB AC CH BI",
            "10",
            False,
        ),
        _spec("01", "BlockPatron", (("card_retained", 1), _D), "AO AL AA AC", "24", False),
        _spec(
            "99",
            "SCStatus",
            (("status_code", 1), ("max_print_width", 3), ("protocol_version", 4)),
            "",
            "98",
            False,
        ),
        _spec("97", "RequestResend", (), "", None, False),
        _spec("93", "Login", (("uid_algorithm", 1), ("pwd_algorithm", 1)), "CN CO CP", "94", True),
        _spec(
            "63",
            "PatronInformation",
            (("language", 3), _D, ("summary", 10)),
            "AO AA AC AD BP BQ",
            "64",
            True,
        ),
        _spec("35", "EndPatronSession", (_D,), "AO AA AC AD", "36", True),
        _spec(
            "37",
            "FeePaid",
            (_D, ("fee_type", 2), ("payment_type", 2), ("currency_type", 3)),
            "BV AO AA AC AD CG BK",
            "38",
            True,
        ),
        _spec("17", "ItemInformation", (_D,), "AO AB AC", "18", True),
        _spec("19", "ItemStatusUpdate", (_D,), "AO AA AB AC CH", "20", True),
        _spec("25", "PatronEnable", (_D,), "AO AA AC AD", "26", True),
        _spec(
            "15",
            "Hold",
            (("hold_mode", 1), _D),
            "BW BS BY AO AA AD AB AJ AC BO",
            "16",
            True,
        ),
        _spec(
            "29",
            "Renew",
            (("third_party_allowed", 1), ("no_block", 1), _D, ("nb_due_date", 18)),
            "AO AA AD AB AJ AC CH BO",
            "30",
            True,
        ),
        _spec("65", "RenewAll", (_D,), "AO AA AD AC BO", "66", True),
    )
}

_PATRON_STATUS = (("patron_status", 14), ("language", 3), _D)
_CIRC_RESPONSE_FIELDS = "AO AA AB AJ AH BT CI BH BV CK CH BK AF AG BL CQ"

#: ACS -> SC messages (3M SIP2 2.00 "Message formats"), keyed by command code. The variable
#: field sets include the 3M extensions Koha sends (CR CS CT CV CY DA, PA PB PC PI).
RESPONSES: dict[str, MessageSpec] = {
    s.code: s
    for s in (
        _spec(
            "24",
            "PatronStatusResponse",
            _PATRON_STATUS,
            "AO AA AE BL CQ BH BV AF AG",
            None,
            False,
        ),
        _spec(
            "12",
            "CheckoutResponse",
            (("ok", 1), ("renewal_ok", 1), ("magnetic_media", 1), ("desensitize", 1), _D),
            _CIRC_RESPONSE_FIELDS,
            None,
            False,
        ),
        _spec(
            "10",
            "CheckinResponse",
            (("ok", 1), ("resensitize", 1), ("magnetic_media", 1), ("alert", 1), _D),
            "AO AB AQ AJ CL AA CK CH AF AG CR CS CT CV CY DA",
            None,
            False,
        ),
        _spec(
            "98",
            "ACSStatus",
            (
                ("online_status", 1),
                ("checkin_ok", 1),
                ("checkout_ok", 1),
                ("acs_renewal_policy", 1),
                ("status_update_ok", 1),
                ("offline_ok", 1),
                ("timeout_period", 3),
                ("retries_allowed", 3),
                ("date_time_sync", 18),
                ("protocol_version", 4),
            ),
            "AO BX AM AN AF AG",
            None,
            False,
        ),
        _spec("96", "RequestSCResend", (), "", None, False),
        _spec("94", "LoginResponse", (("ok", 1),), "", None, True),
        _spec(
            "64",
            "PatronInformationResponse",
            _PATRON_STATUS
            + (
                ("hold_items_count", 4),
                ("overdue_items_count", 4),
                ("charged_items_count", 4),
                ("fine_items_count", 4),
                ("recall_items_count", 4),
                ("unavailable_holds_count", 4),
            ),
            "AO AA AE BZ CA CB BL CQ BH BV CC AS AT AU AV BU CD BD BE BF AF AG PA PB PC PI",
            None,
            True,
        ),
        _spec(
            "36", "EndPatronSessionResponse", (("end_session", 1), _D), "AO AA AF AG", None, True
        ),
        _spec("38", "FeePaidResponse", (("payment_accepted", 1), _D), "AO AA BK AF AG", None, True),
        _spec(
            "18",
            "ItemInformationResponse",
            (("circulation_status", 2), ("security_marker", 2), ("fee_type", 2), _D),
            "AB AJ CF AH CJ CM BG BH BV CK AQ AP CH AF AG CR CS",
            None,
            True,
        ),
        _spec(
            "20",
            "ItemStatusUpdateResponse",
            (("item_properties_ok", 1), _D),
            "AB AJ CH AF AG",
            None,
            True,
        ),
        _spec(
            "26",
            "PatronEnableResponse",
            _PATRON_STATUS,
            "AO AA AE BL CQ AF AG",
            None,
            True,
        ),
        _spec(
            "16",
            "HoldResponse",
            (("ok", 1), ("available", 1), _D),
            "AO AA BW BR BS AB AJ AF AG",
            None,
            True,
        ),
        _spec(
            "30",
            "RenewResponse",
            (("ok", 1), ("renewal_ok", 1), ("magnetic_media", 1), ("desensitize", 1), _D),
            _CIRC_RESPONSE_FIELDS,
            None,
            True,
        ),
        _spec(
            "66",
            "RenewAllResponse",
            (("ok", 1), ("renewed_count", 4), ("unrenewed_count", 4), _D),
            "AO BM BN AF AG",
            None,
            True,
        ),
    )
}

if REQUESTS.keys() & RESPONSES.keys():  # pragma: no cover - a table error, caught at import
    raise ValueError("request and response codes overlap")

#: Every message spec by its CamelCase name.
BY_NAME: dict[str, MessageSpec] = {s.name: s for s in (*REQUESTS.values(), *RESPONSES.values())}


def lookup(code: str) -> MessageSpec | None:
    """The spec of a request or response command code, or ``None``."""
    return REQUESTS.get(code) or RESPONSES.get(code)


# --- coded values (3M SIP2 2.00 "Message formats" and "Field identifiers") -----------------
# The meanings of the fixed-field codes and coded variable fields, for clients and logs that
# show a message to a person. Keys are the values as they appear on the wire.

#: The 14 positions of "patron status" (24, 26 and 64 responses), in wire order.
PATRON_STATUS_FLAGS: tuple[str, ...] = (
    "charge privileges denied",
    "renewal privileges denied",
    "recall privileges denied",
    "hold privileges denied",
    "card reported lost",
    "too many items charged",
    "too many items overdue",
    "too many renewals",
    "too many claims of items returned",
    "too many items lost",
    "excessive outstanding fines",
    "excessive outstanding fees",
    "recall overdue",
    "too many items billed",
)

#: The 16 positions of BX "supported messages" in the 98 ACS Status, in wire order.
SUPPORTED_MESSAGES: tuple[tuple[str, str], ...] = (
    ("23", "patron status request"),
    ("11", "checkout"),
    ("09", "checkin"),
    ("01", "block patron"),
    ("99", "SC/ACS status"),
    ("97", "request SC/ACS resend"),
    ("93", "login"),
    ("63", "patron information"),
    ("35", "end patron session"),
    ("37", "fee paid"),
    ("17", "item information"),
    ("19", "item status update"),
    ("25", "patron enable"),
    ("15", "hold"),
    ("29", "renew"),
    ("65", "renew all"),
)

#: The 10 positions of "summary" in 63 Patron Information: which list the 64 carries.
SUMMARY_ITEMS: tuple[tuple[str, str], ...] = (
    ("hold", "hold items (AS)"),
    ("overdue", "overdue items (AT)"),
    ("charged", "charged items (AU)"),
    ("fine", "fine items (AV)"),
    ("recall", "recall items (BU)"),
    ("unavailable", "unavailable hold items (CD)"),
)

#: "circulation status" of 18 Item Information Response.
CIRCULATION_STATUS: dict[str, str] = {
    "01": "other",
    "02": "on order",
    "03": "available",
    "04": "charged",
    "05": "charged; not to be recalled until earliest recall date",
    "06": "in process",
    "07": "recalled",
    "08": "waiting on hold shelf",
    "09": "waiting to be re-shelved",
    "10": "in transit between library locations",
    "11": "claimed returned",
    "12": "lost",
    "13": "missing",
}

#: "security marker" of 18 Item Information Response.
SECURITY_MARKER: dict[str, str] = {
    "00": "other",
    "01": "none",
    "02": "3M Tattle-Tape Security Strip",
    "03": "3M Whisper Tape",
}

#: "fee type" (fixed field of 18 and 37, BT in 12 and 30).
FEE_TYPE: dict[str, str] = {
    "01": "other/unknown",
    "02": "administrative",
    "03": "damage",
    "04": "overdue",
    "05": "processing",
    "06": "rental",
    "07": "replacement",
    "08": "computer access charge",
    "09": "hold fee",
}

#: "payment type" of 37 Fee Paid.
PAYMENT_TYPE: dict[str, str] = {"00": "cash", "01": "VISA", "02": "credit card"}

#: CK "media type".
MEDIA_TYPE: dict[str, str] = {
    "000": "other",
    "001": "book",
    "002": "magazine",
    "003": "bound journal",
    "004": "audio tape",
    "005": "video tape",
    "006": "CD/CDROM",
    "007": "diskette",
    "008": "book with diskette",
    "009": "book with CD",
    "010": "book with audio tape",
}

#: CV "alert type" (3M SIP2 Extensions), sent by Koha in 10 Checkin Response.
ALERT_TYPE: dict[str, str] = {
    "00": "unknown",
    "01": "hold for this library",
    "02": "hold for other library",
    "03": "hold for ILL",
    "04": "send to other library",
    "99": "other",
}

#: BY "hold type" of 15 Hold.
HOLD_TYPE: dict[str, str] = {
    "1": "other",
    "2": "any copy of a title",
    "3": "a specific copy of a title",
    "4": "any copy at a single branch or sublocation",
}

#: "hold mode" of 15 Hold.
HOLD_MODE: dict[str, str] = {"+": "add", "-": "delete", "*": "change"}

#: "status code" of 99 SC Status.
SC_STATUS_CODE: dict[str, str] = {
    "0": "SC unit is OK",
    "1": "SC printer is out of paper",
    "2": "SC is about to shut down",
}

#: "language" (fixed field of 23, 24, 26, 63, 64).
LANGUAGE: dict[str, str] = {
    "000": "unknown",
    "001": "English",
    "002": "French",
    "003": "German",
    "004": "Italian",
    "005": "Dutch",
    "006": "Swedish",
    "007": "Finnish",
    "008": "Spanish",
    "009": "Danish",
    "010": "Portuguese",
    "011": "Canadian-French",
    "012": "Norwegian",
    "013": "Hebrew",
    "014": "Japanese",
    "015": "Russian",
    "016": "Arabic",
    "017": "Polish",
    "018": "Greek",
    "019": "Chinese",
    "020": "Korean",
    "021": "North American Spanish",
    "022": "Tamil",
    "023": "Malay",
    "024": "United Kingdom",
    "025": "Icelandic",
    "026": "Belgian",
    "027": "Taiwanese",
}

#: Fixed fields that hold a date/time ``YYYYMMDDZZZZHHMMSS``.
DATE_FIXED_FIELDS = frozenset({"transaction_date", "nb_due_date", "return_date", "date_time_sync"})
#: Variable fields that hold a date (AH may also be free text, as Koha's due date format allows).
DATE_FIELDS = frozenset({"AH", "BW", "CJ", "CM", "PB"})
#: Fixed fields that are Y/N (or Y/space, U for unknown).
YES_NO_FIXED_FIELDS = frozenset(
    {
        "ok",
        "renewal_ok",
        "magnetic_media",
        "desensitize",
        "resensitize",
        "alert",
        "online_status",
        "checkin_ok",
        "checkout_ok",
        "acs_renewal_policy",
        "status_update_ok",
        "offline_ok",
        "sc_renewal_policy",
        "no_block",
        "card_retained",
        "third_party_allowed",
        "end_session",
        "payment_accepted",
        "available",
        "item_properties_ok",
    }
)
#: Variable fields that are Y/N.
YES_NO_FIELDS = frozenset({"BL", "CQ", "BO", "BI", "CI"})
#: Coded fixed fields: field name -> table of meanings.
CODED_FIXED_FIELDS: dict[str, dict[str, str]] = {
    "circulation_status": CIRCULATION_STATUS,
    "security_marker": SECURITY_MARKER,
    "fee_type": FEE_TYPE,
    "payment_type": PAYMENT_TYPE,
    "hold_mode": HOLD_MODE,
    "status_code": SC_STATUS_CODE,
    "language": LANGUAGE,
}
#: Coded variable fields: field id -> table of meanings.
CODED_FIELDS: dict[str, dict[str, str]] = {
    "BT": FEE_TYPE,
    "CK": MEDIA_TYPE,
    "CV": ALERT_TYPE,
    "BY": HOLD_TYPE,
}
