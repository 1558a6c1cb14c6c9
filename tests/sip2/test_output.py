"""OutputPolicy: Koha's per-account encoding, terminator, hide/allow_fields, screen_msg_regex and
convert_nonprinting_characters (C4::SIP::Sip add_field / maybe_add / write_msg)."""

from dataclasses import dataclass

import pytest

from koha_gateway.sip2.checksum import verify
from koha_gateway.sip2.codec import Response
from koha_gateway.sip2.output import DEFAULT_POLICY, OutputPolicy, normalize_encoding

T = "20261129    084238"


def patron_info():
    return (
        Response("64")
        .fixed(" " * 14, "000", T, "0000", "0000", "0000", "0000", "0000", "0000")
        .add("AO", "CPL").add("AA", "p1").add("AE", "Ann Lee").add("BL", "Y")
        .add("BD", "1 Main St").add("BE", "ann@example.org").add("BF", "555")
        .add("PB", "19800101").add("AF", "Greetings")
    )  # fmt: skip


HEAD = f"64{' ' * 14}000{T}" + "0000" * 6


def test_defaults():
    assert DEFAULT_POLICY.encoding == "utf-8"
    assert DEFAULT_POLICY.terminator == b"\r\n"
    assert DEFAULT_POLICY.delimiter == "|"
    assert DEFAULT_POLICY.allow_fields is None
    assert DEFAULT_POLICY.hide_fields == frozenset()


def test_hide_fields():
    policy = OutputPolicy(hide_fields=frozenset({"BD", "BE", "BF", "PB"}))
    assert (
        patron_info().encode(policy)
        == (HEAD + "AOCPL|AAp1|AEAnn Lee|BLY|AFGreetings|\r\n").encode()
    )


def test_allow_fields():
    policy = OutputPolicy(allow_fields=frozenset({"BE", "BF"}))
    assert patron_info().encode(policy) == (HEAD + "BEann@example.org|BF555|\r\n").encode()


def test_hide_wins_over_allow():
    policy = OutputPolicy(allow_fields="BE,BF", hide_fields="BF")
    assert patron_info().encode(policy) == (HEAD + "BEann@example.org|\r\n").encode()


def test_terminator():
    assert OutputPolicy(terminator=b"\r").terminator == b"\r"
    assert OutputPolicy(terminator="CR").terminator == b"\r"
    assert OutputPolicy(terminator="CRLF").terminator == b"\r\n"
    with pytest.raises(ValueError):
        OutputPolicy(terminator=b"\n")


@pytest.mark.parametrize(
    ("name", "codec"),
    [
        ("utf8", "utf-8"), ("UTF-8", "utf-8"), ("ascii", "ascii"), ("cp850", "cp850"),
        ("latin-1", "latin-1"), ("iso-8859-1", "latin-1"), (None, "utf-8"), ("", "utf-8"),
        ("IBM850", "cp850"),
    ],
)  # fmt: skip
def test_encoding_names(name, codec):
    assert normalize_encoding(name) == codec


def test_unknown_encoding():
    with pytest.raises(ValueError):
        OutputPolicy(encoding="klingon")


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [
        ("ascii", b"AFJos? ? ?|"),
        ("latin-1", "AFJosé ½ ?|".encode("latin-1")),
        ("cp850", "AFJosé ½ ?|".encode("cp850")),
        ("utf-8", "AFJosé ½ €|".encode()),
    ],
)
def test_encodings_replace_unencodable(encoding, expected):
    r = Response("36").fixed("Y", T).add("AF", "José ½ €")
    data = r.encode(OutputPolicy(encoding=encoding, terminator=b"\r"), seq="2")
    assert data.startswith(f"36Y{T}".encode() + expected + b"AY2AZ")
    assert verify(data[:-1])


def test_cp850_checksum_is_over_cp850_bytes():
    r = Response("36").fixed("Y", T).add("AF", "Ærø")
    data = r.encode(OutputPolicy(encoding="cp850", terminator=b"\r"), seq="0")[:-1]
    assert b"\x92r\x9b" in data  # cp850 bytes of "Ærø"
    assert verify(data)
    assert not verify(data.decode("cp850").encode("utf-8"))


def test_screen_msg_regex_in_order_with_groups():
    policy = OutputPolicy(
        screen_msg_regex=(
            (r"Greetings from Koha\. ", ""),
            (r"Patron (\w+)", r"Borrower $1!"),
            (r"(\d+)\.(\d+)", r"${2}/$1"),
            (r"!", r"\$"),
        )
    )
    r = (
        Response("36").fixed("Y", T).add("AO", "Patron x")
        .add("AF", "Greetings from Koha. Patron debarred 12.50").add("AG", "Patron y")
    )  # fmt: skip
    assert (
        r.encode(policy)
        == (f"36Y{T}AOPatron x|AFBorrower debarred$ 50/12|AGPatron y|\r\n").encode()
    )


def test_screen_msg_regex_missing_group_and_bad_pattern():
    policy = OutputPolicy(screen_msg_regex=((r"a(x)?", r"[$1$5]"),))
    assert policy.screen_message("ab") == "[]b"
    with pytest.raises(ValueError):
        OutputPolicy(screen_msg_regex=(("(", "x"),))


def test_convert_nonprinting():
    policy = OutputPolicy(convert_nonprinting=" -- ")
    r = Response("36").fixed("Y", T).add("AF", "one\ntwo\tthree\x00")
    assert r.encode(policy, seq="1").startswith(f"36Y{T}AFone -- two -- three -- |AY1AZ".encode())
    assert verify(r.encode(policy, seq="1")[:-2])
    assert OutputPolicy(convert_nonprinting="").convert_nonprinting is None
    # Without the option, only CR inside a value is touched (it becomes a space).
    plain = Response("36").fixed("Y", T).add("AF", "a\r\nb").encode()
    assert plain == f"36Y{T}AFa \nb|\r\n".encode()


@dataclass
class Account:
    id: str = "term1"
    encoding: str | None = "ascii"
    terminator: str | None = "CR"
    delimiter: str | None = None
    hide_fields: str | None = "BD, BE"
    allow_fields: str | None = None
    screen_msg_regex: tuple = ((r"foo", "bar"),)
    convert_nonprinting_characters: str | None = " "


def test_from_account_object():
    policy = OutputPolicy.from_account(Account())
    assert policy.encoding == "ascii"
    assert policy.terminator == b"\r"
    assert policy.delimiter == "|"
    assert policy.hide_fields == {"BD", "BE"}
    assert policy.allow_fields is None
    assert policy.screen_msg_regex == (("foo", "bar"),)
    assert policy.convert_nonprinting == " "


def test_from_account_defaults_and_mapping():
    policy = OutputPolicy.from_account(object())
    assert policy == DEFAULT_POLICY
    policy = OutputPolicy.from_account(
        {
            "terminator": "CRLF",
            "allow_fields": ["AO", "AA", "AE"],
            "screen_msg_regex": [{"find": "a", "replace": "b"}],
        }
    )
    assert policy.terminator == b"\r\n"
    assert policy.allow_fields == {"AO", "AA", "AE"}
    assert policy.screen_message("aa") == "bb"


def test_policy_is_frozen_and_hashable():
    policy = OutputPolicy(hide_fields={"AE"})
    with pytest.raises(AttributeError):
        policy.encoding = "ascii"
    assert policy == OutputPolicy(hide_fields=frozenset({"AE"}))
    assert hash(policy) == hash(OutputPolicy(hide_fields=frozenset({"AE"})))


def test_perl_named_groups_and_end_of_string_in_screen_msg_regex():
    # Koha's finds are Perl regexes: (?<name>...), \k<name>, $+{name} and \z must work too.
    policy = OutputPolicy(
        screen_msg_regex=(
            (r"(?<word>\w+) \k<word>", r"$+{word}"),
            (r"(?'n'\d+) items\z", r"${1} item(s)"),
            (r"(?<=Patron )blocked", r"held"),
        )
    )
    assert policy.screen_message("the the 3 items") == "the 3 item(s)"
    assert policy.screen_message("Patron blocked") == "Patron held"
    assert OutputPolicy(screen_msg_regex=((r"[(?<x>)]", "_"),)).screen_message("a(b)") == "a_b_"
    assert policy.screen_message("3 items later") == "3 items later"  # \z: only at the end


def test_perl_pattern_translation():
    from koha_gateway.sip2.output import perl_pattern

    assert perl_pattern(r"(?<a>x)\k{a}\k'a'") == r"(?P<a>x)(?P=a)(?P=a)"
    assert perl_pattern(r"(?<!x)(?<=y)\(?<a>\z") == r"(?<!x)(?<=y)\(?<a>\Z"
    assert perl_pattern(r"[\]z(?<a>]\\z") == r"[\]z(?<a>]\\z"
    assert perl_pattern(r"[]a]") == r"[]a]"
    assert perl_pattern("plain text.") == "plain text."
    with pytest.raises(ValueError):
        OutputPolicy(screen_msg_regex=((r"(?<1bad>x)", "y"),))
