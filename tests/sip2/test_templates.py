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
        "[% FOREACH a IN b %]",
        "[% IF %]x[% END %]",
        "[% END %]",
        "[% ELSE %]",
        "[% IF x %]",
        "[% IF x %]a[% ELSE %]b[% ELSE %]c[% END %]",
        "[% IF x %]a[% ELSE %]b[% ELSIF y %]c[% END %]",
        "[% IF x %]a[% END y %]",
        "[% IF x == %]a[% END %]",
        "[% IF (x %]a[% END %]",
        "[% IF x y %]a[% END %]",
        "[% IF x | upper %]a[% END %]",
        "[% x.get_column(1) %]",
        "[% x.get_column('a b') %]",
        "[% x.get_column %]",
        "[% IF x._secret %]a[% END %]",
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


def test_koha_example_templates_with_if():
    # The ae/da_field_template examples of Koha's etc/SIPconfig.xml.
    ae = (
        "[% patron.get_column('surname') %][% IF patron.get_column('firstname') %], "
        "[% patron.get_column('firstname') %][% END %]"
    )
    da = "[% patron.surname %][% IF patron.firstname %], [% patron.firstname %][% END %]"
    assert Template(ae).render(patron={"surname": "Lee", "firstname": "Ann"}) == "Lee, Ann"
    assert Template(ae).render(patron={"surname": "Lee", "firstname": ""}) == "Lee"
    assert Template(da).render(patron=Patron()) == "Lee, Ann"
    assert Template(da).render(patron=Patron(firstname=None)) == "Lee"


def test_elsif_else_unless_and_nesting():
    source = (
        "[% IF n > 10 %]many[% ELSIF n >= 1 %]some[% ELSE %]none[% END %]"
        "[% UNLESS n %]![% END %]"
        "[% IF n %]<[% IF n == 3 %]three[% ELSE %]other[% END %]>[% END %]"
    )
    assert Template(source).render(n=12) == "many<other>"
    assert Template(source).render(n=3) == "some<three>"
    assert Template(source).render(n=0) == "none!"
    assert Template(source).render() == "none!"


def test_condition_operators():
    def check(condition, **context):
        return Template(f"[% IF {condition} %]y[% ELSE %]n[% END %]").render(**context)

    assert check("a == 'x'", a="x") == "y"
    assert check("a != 'x'", a="x") == "n"
    assert check("a == 2", a=Decimal("2")) == "y"  # text comparison, as TT's ==
    assert check("a < 10", a="9.5") == "y" and check("a >= 10", a="9.5") == "n"
    assert check("a <= b", a=2, b=2.0) == "y"
    assert check("NOT a", a="0") == "y" and check("!a", a="x") == "n"
    assert check("a AND b", a=1, b="") == "n" and check("a && b", a=1, b="z") == "y"
    assert check("a OR b", a="", b="z") == "y" and check("a || b", a=0, b=None) == "n"
    assert check("NOT (a OR b) AND c", a="", b="", c=1) == "y"
    assert check("'0'") == "n" and check("'00'") == "y" and check("0.0") == "n"


def test_conditions_never_raise_and_call_nothing():
    class Boom:
        @property
        def name(self):
            raise RuntimeError("nope")

    assert Template("[% IF b.name %]y[% ELSE %]n[% END %]").render(b=Boom()) == "n"
    assert Template("[% IF p.delete %]y[% ELSE %]n[% END %]").render(p=Patron()) == "n"
    assert Template("[% IF a < 1 %]y[% ELSE %]n[% END %]").render(a=object()) == "y"


def test_chomping_around_blocks():
    source = "Hi\n[%- IF name -%]\n  [% name %]\n[%- END %]"
    assert Template(source).render(name="Ann") == "Hi  Ann"
    assert Template(source).render(name="") == "Hi"
