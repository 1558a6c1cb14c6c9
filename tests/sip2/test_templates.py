"""The safe Koha-compatible template subset (Template Toolkit 2 syntax)."""

from dataclasses import dataclass
from decimal import Decimal

import pytest

from koha_gateway.sip2.templates import AE_DEFAULT, AV_DEFAULT, DA_DEFAULT, Template, TemplateError


@dataclass
class Patron:
    firstname: str = "Ann"
    surname: str = "Lee"
    email: str = "ann@example.org"
    phone: str | None = None
    _secret: str = "hash"

    def delete(self):
        raise AssertionError("templates must never call methods")


def test_koha_defaults():
    assert Template(AE_DEFAULT).render(patron=Patron()) == "Ann Lee"
    assert Template(DA_DEFAULT).render(patron=Patron()) == "Ann Lee (ann@example.org, )"
    line = {"description": "Overdue: Dune", "amountoutstanding": Decimal("2.5")}
    assert Template(AV_DEFAULT).render(accountline=line) == "Overdue: Dune 2.50"


def test_text_only_and_empty():
    assert Template("").render() == ""
    assert Template("plain % text ] [").render() == "plain % text ] ["


def test_dicts_attributes_and_missing():
    t = Template("[% a.b.c %]|[% a.x %]|[% nope.deeper %]|[% p.firstname %]|[% l.1 %]")
    assert t.render(a={"b": {"c": 3}}, p=Patron(), l=["x", "y"]) == "3|||Ann|y"


def test_no_methods_no_private_names():
    assert Template("[% p.delete %][% d.items %]").render(p=Patron(), d={"k": 1}) == ""
    with pytest.raises(TemplateError, match="_"):
        Template("[% p._secret %]")
    with pytest.raises(TemplateError):
        Template("[% p.__class__ %]")


def test_filters():
    ctx = {"v": "  Mixed Case  ", "n": "3.14159", "h": '<a href="x">&\'</a>'}
    assert Template("[% v | trim | upper %]").render(**ctx) == "MIXED CASE"
    assert Template("[% v | lower %]").render(**ctx) == "  mixed case  "
    assert Template("[% v | collapse %]").render(**ctx) == "Mixed Case"
    assert Template("[% n | format('%.2f') %]").render(**ctx) == "3.14"
    assert Template("[% n | format('%5d') %]").render(**ctx) == "    3"
    assert Template("[% n | format('<%s>') %]").render(**ctx) == "<3.14159>"
    assert (
        Template("[% h | html %]").render(**ctx) == "&lt;a href=&quot;x&quot;&gt;&amp;'&lt;/a&gt;"
    )
    assert Template("[% v | trim | replace('a', 'A') %]").render(**ctx) == "Mixed CAse"
    assert Template("[% v | trim | replace('(\\w+) (\\w+)', '$2, $1') %]").render(**ctx) == (
        "Case, Mixed"
    )
    assert Template("[% v | trim | truncate(6) %]").render(**ctx) == "Mix..."
    assert Template("[% v | trim | truncate(6, '') %]").render(**ctx) == "Mixed "
    assert Template("[% v | trim | truncate(20) %]").render(**ctx) == "Mixed Case"
    assert Template("[% x | default('none') %]").render() == "none"
    assert Template("[% x | default('none') %]").render(x="0") == "0"
    assert Template("[% v | trim | ucfirst %]").render(v=" abc") == "Abc"


def test_format_non_numeric_is_zero():
    assert Template("[% x | format('%.2f') %]").render(x="abc") == "0.00"
    assert Template("[% x | format('%.2f') %]").render() == "0.00"


def test_literals_get_and_comments():
    assert Template("[% 'a\\'b' %]").render() == "a'b"
    assert Template('[% "x" | upper %]').render() == "X"
    assert Template("[% 42 %]").render() == "42"
    assert Template("[% GET a %]").render(a=1) == "1"
    assert Template("x[%# a comment with %] inside? no %]y").render() == "x inside? no %]y"
    assert Template("[% 'a %] b' %]").render() == "a %] b"


def test_chomping_like_template_toolkit():
    src = "Name:\n  [%- p.firstname -%]  \n!"
    assert Template(src).render(p=Patron()) == "Name:Ann!"
    assert Template("a [%- x -%] b").render(x=1) == "a 1 b"  # CHOMP_ONE keeps same-line spaces
    assert Template("a \n [%~ x ~%] \n b").render(x=1) == "a1b"
    assert Template("a \n [%= x =%] \n b").render(x=1) == "a 1 b"
    assert Template("a \n [%+ x +%] \n b").render(x=1) == "a \n 1 \n b"


@pytest.mark.parametrize(
    "source",
    [
        "[% x",
        "[% IF x %]yes[% END %]",
        "[% FOREACH a IN b %]",
        "[% SET x = 1 %]",
        "[% INCLUDE foo %]",
        "[% x | nosuchfilter %]",
        "[% x | format('%d %d') %]",
        "[% x | format(1) %]",
        "[% x | truncate('a') %]",
        "[% x | replace('(', 'y') %]",
        "[% x y %]",
        "[% x | %]",
        "[% x | upper( %]",
        "[% x + 1 %]",
        "[% x.y() %]",
        "[% x | upper('a') %]",
        "[% GET %]",
    ],
)
def test_bad_templates(source):
    with pytest.raises(TemplateError) as info:
        Template(source)
    assert "line 1" in str(info.value)


def test_error_names_the_line():
    with pytest.raises(TemplateError, match="line 3"):
        Template("a\nb\n[% IF x %]")


def test_hostile_objects_do_not_break_rendering():
    class Boom:
        @property
        def name(self):
            raise RuntimeError("nope")

    assert Template("<[% b.name %]>").render(b=Boom()) == "<>"
