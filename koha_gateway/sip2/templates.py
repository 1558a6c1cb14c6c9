"""A small, safe template language compatible with the Koha templates found in SIPconfig.xml.

Koha renders ``ae_field_template``, ``da_field_template``, ``av_field_template`` and the
``custom_patron_field`` / ``custom_item_field`` templates with Template Toolkit. The templates
people write there print variables, sometimes inside an ``IF``, so this module implements that
subset of Template Toolkit 2 syntax and nothing that can run code:

* text, and directives ``[% patron.firstname %]`` whose dotted path walks dictionary keys or
  object attributes (a missing step gives an empty string; names starting with ``_`` and
  callables are refused);
* string and number literals ``[% 'text' %]``, an optional ``GET`` keyword, comments
  ``[%# ... %]``;
* filters after ``|``: ``format('%.2f')``, ``upper``, ``lower``, ``ucfirst``, ``lcfirst``,
  ``trim``, ``collapse``, ``html``, ``replace('regex', 'text')``, ``truncate(n)`` /
  ``truncate(n, '...')``, ``default('x')``;
* whitespace chomping flags as in Template Toolkit: ``[%-`` / ``-%]`` remove the spaces and one
  newline next to the tag, ``~`` removes all whitespace, ``=`` collapses it to one space,
  ``+`` keeps it;
* conditionals ``[% IF cond %]...[% ELSIF cond %]...[% ELSE %]...[% END %]`` and ``UNLESS``,
  as in Koha's own example ``[% patron.surname %][% IF patron.firstname %], [% patron.firstname
  %][% END %]``: a condition is a variable or literal (Perl truth: empty, ``0`` and missing are
  false), compared with ``==``/``!=`` (as text) or ``<``, ``>``, ``<=``, ``>=`` (as numbers),
  combined with ``NOT``/``!``, ``AND``/``&&``, ``OR``/``||`` and parentheses;
* ``x.get_column('name')``, the Koha::Object accessor the Koha examples use, is read as
  ``x.name`` (no method is ever called).

Any other directive (``FOREACH``, ``SET``, ``INCLUDE``, ...) is a :class:`TemplateError` at
compile time. Rendering never raises.
"""

from __future__ import annotations

import html as _html
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from koha_gateway.sip2.output import perl_replacement

__all__ = [
    "AE_DEFAULT",
    "AV_DEFAULT",
    "DA_DEFAULT",
    "Template",
    "TemplateError",
]

#: Koha's default templates (``C4::SIP::ILS::Patron`` / ``C4::SIP::Sip::MsgType``).
AE_DEFAULT = "[% patron.firstname %] [% patron.surname %]"
DA_DEFAULT = "[% patron.firstname %] [% patron.surname %] ([% patron.email %], [% patron.phone %])"
AV_DEFAULT = "[% accountline.description %] [% accountline.amountoutstanding | format('%.2f') %]"


class TemplateError(ValueError):
    """The template source is not valid; the message says where and why."""


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<num>-?\d+(?:\.\d+)?)
  | (?P<path>[A-Za-z_][A-Za-z0-9_]*(?:\.(?:[A-Za-z_][A-Za-z0-9_]*|\d+))*)
  | (?P<op>==|!=|<=|>=|&&|\|\||<|>|!)
  | (?P<punct>[|(),])
    """,
    re.VERBOSE | re.DOTALL,
)
_UNQUOTE = re.compile(r"\\(.)", re.DOTALL)
# Template Toolkit: in '...' only \\ and \' are escapes; "..." also knows \n \t \r \$.
# Other backslashes are kept, so regular expressions for replace() survive quoting.
_SINGLE_ESCAPES = {"\\": "\\", "'": "'"}
_DOUBLE_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t", "r": "\r", "$": "$"}
_FORMAT = re.compile(r"%(?:%|[-+ 0#]*\d*(?:\.\d+)?([sdifeEgGxXoc]))")
_KEYWORDS = frozenset(
    {
        *("IF", "ELSIF", "ELSE", "UNLESS", "END", "FOREACH", "FOR", "WHILE", "SET", "CALL"),
        *("INCLUDE", "INSERT", "PROCESS", "WRAPPER", "BLOCK", "MACRO", "FILTER", "USE", "PERL"),
        *("RAWPERL", "TRY", "CATCH", "THROW", "NEXT", "LAST", "RETURN", "STOP", "DEFAULT"),
        *("SWITCH", "CASE", "TAGS", "DEBUG", "META", "CLEAR", "VIEW"),
    }
)

_PRE_CHOMP = {
    "-": lambda s: re.sub(r"(?m)(\r?\n|^)[^\S\n]*\Z", "", s, count=1),
    "~": lambda s: s.rstrip(),
    "=": lambda s: re.sub(r"\s+\Z", " ", s),
    "+": lambda s: s,
}
_POST_CHOMP = {
    "-": lambda s: re.sub(r"\A[^\S\n]*\n", "", s, count=1),
    "~": lambda s: s.lstrip(),
    "=": lambda s: re.sub(r"\A\s+", " ", s),
    "+": lambda s: s,
}


def _to_text(value: Any) -> str:
    if value is None or value is False:
        return ""
    if value is True:
        return "1"
    return value if isinstance(value, str) else str(value)


def _number(value: Any) -> Any:
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return value
    try:
        return Decimal(_to_text(value).strip() or "0")
    except InvalidOperation:
        return Decimal(0)


def _compile_format(fmt: str, where: str) -> Callable[[Any], str]:
    conversions = [m for m in _FORMAT.finditer(fmt) if m.group(1)]
    stripped = _FORMAT.sub("", fmt)
    if len(conversions) != 1 or "%" in stripped:
        raise TemplateError(f"{where}: format() needs exactly one conversion such as '%.2f'")
    conv = conversions[0].group(1)

    def apply(value: Any) -> str:
        if conv == "s":
            return fmt % _to_text(value)
        number = _number(value)
        if conv in "dioxXc":
            number = int(number)
        elif isinstance(number, Decimal) and conv in "eEgG":
            number = float(number)
        try:
            return fmt % number
        except (ValueError, OverflowError, TypeError):
            return _to_text(value)

    return apply


def _truncate(length: int, suffix: str) -> Callable[[Any], str]:
    def apply(value: Any) -> str:
        text = _to_text(value)
        if len(text) <= length:
            return text
        if length <= len(suffix):
            return suffix[:length]
        return text[: length - len(suffix)] + suffix

    return apply


def _replace(search: str, replacement: str, where: str) -> Callable[[Any], str]:
    try:
        pattern = re.compile(search)
    except re.error as exc:
        raise TemplateError(f"{where}: replace() pattern {search!r}: {exc}") from None
    repl = perl_replacement(replacement)
    return lambda value: pattern.sub(repl, _to_text(value))


def _default(fallback: Any) -> Callable[[Any], Any]:
    text = _to_text(fallback)
    return lambda value: text if value is None or _to_text(value) == "" else value


def _ucfirst(value: Any) -> str:
    text = _to_text(value)
    return text[:1].upper() + text[1:]


def _lcfirst(value: Any) -> str:
    text = _to_text(value)
    return text[:1].lower() + text[1:]


_SIMPLE_FILTERS: dict[str, Callable[[Any], Any]] = {
    "upper": lambda v: _to_text(v).upper(),
    "lower": lambda v: _to_text(v).lower(),
    "ucfirst": _ucfirst,
    "lcfirst": _lcfirst,
    "trim": lambda v: _to_text(v).strip(),
    "collapse": lambda v: " ".join(_to_text(v).split()),
    "html": lambda v: _html.escape(_to_text(v), quote=True).replace("&#x27;", "'"),
}


def _make_filter(name: str, args: list[Any], where: str) -> Callable[[Any], Any]:
    if name in _SIMPLE_FILTERS:
        if args:
            raise TemplateError(f"{where}: filter {name} takes no arguments")
        return _SIMPLE_FILTERS[name]
    if name == "format":
        if len(args) != 1 or not isinstance(args[0], str):
            raise TemplateError(f"{where}: format() takes one string argument")
        return _compile_format(args[0], where)
    if name == "replace":
        if len(args) not in (1, 2) or not all(isinstance(a, str) for a in args):
            raise TemplateError(f"{where}: replace() takes a pattern and a replacement string")
        return _replace(args[0], args[1] if len(args) > 1 else "", where)
    if name == "truncate":
        if not args or len(args) > 2 or not isinstance(args[0], int) or args[0] < 0:
            raise TemplateError(f"{where}: truncate() takes a length and an optional suffix")
        suffix = _to_text(args[1]) if len(args) > 1 else "..."
        return _truncate(args[0], suffix)
    if name == "default":
        if len(args) != 1:
            raise TemplateError(f"{where}: default() takes one argument")
        return _default(args[0])
    raise TemplateError(f"{where}: unknown filter {name!r}")


def _resolve(context: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = context.get(path[0])
    for step in path[1:]:
        if value is None:
            return None
        if isinstance(value, Mapping):
            found = value.get(step)
            if found is None and step.isdigit():
                found = value.get(int(step))
            value = found
        elif step.isdigit() and isinstance(value, Sequence) and not isinstance(value, str):
            index = int(step)
            value = value[index] if index < len(value) else None
        else:
            value = getattr(value, step, None)
        if callable(value):
            return None
    if callable(value):
        return None
    return value


class _Expression:
    __slots__ = ("literal", "path", "filters")

    def __init__(self, literal: Any, path: tuple[str, ...] | None, filters: list) -> None:
        self.literal = literal
        self.path = path
        self.filters = filters

    def render(self, context: Mapping[str, Any]) -> str:
        try:
            value = self.literal if self.path is None else _resolve(context, self.path)
            for apply in self.filters:
                value = apply(value)
            return _to_text(value)
        except Exception:  # a hostile object in the context must not break a SIP response
            return ""


def _tokens(body: str, where: str) -> list[tuple[str, str]]:
    out = []
    pos = 0
    while pos < len(body):
        m = _TOKEN.match(body, pos)
        if m is None:
            raise TemplateError(f"{where}: unexpected {body[pos : pos + 10]!r}")
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append((kind, m.group()))
        pos = m.end()
    return out


def _literal(kind: str, text: str) -> Any:
    if kind == "str":
        escapes = _SINGLE_ESCAPES if text[0] == "'" else _DOUBLE_ESCAPES
        return _UNQUOTE.sub(lambda m: escapes.get(m.group(1), m.group()), text[1:-1])
    if "." in text:
        return Decimal(text)
    return int(text)


def _operand(tokens: list[tuple[str, str]], i: int, where: str) -> tuple[Any, Any, int]:
    """A variable (as a path tuple) or a literal at ``tokens[i]``: ``(literal, path, next)``.

    ``x.get_column('name')`` is the path ``x.name``.
    """
    if i >= len(tokens):
        raise TemplateError(f"{where}: expected a variable or a value")
    kind, text = tokens[i]
    if kind in ("str", "num"):
        return _literal(kind, text), None, i + 1
    if kind != "path":
        raise TemplateError(f"{where}: expected a variable, got {text!r}")
    if text.split(".")[0] in _KEYWORDS:
        raise TemplateError(f"{where}: directive {text.split('.')[0]} is not supported")
    path = tuple(text.split("."))
    i += 1
    if path[-1] == "get_column" and len(path) > 1:
        if (
            i + 2 < len(tokens)
            and tokens[i] == ("punct", "(")
            and tokens[i + 1][0] == "str"
            and tokens[i + 2] == ("punct", ")")
            and _NAME.fullmatch(_literal("str", tokens[i + 1][1]))
        ):
            path = (*path[:-1], _literal("str", tokens[i + 1][1]))
            i += 3
        else:
            raise TemplateError(f"{where}: get_column() takes one column name")
    if any(step.startswith("_") for step in path):
        raise TemplateError(f"{where}: names starting with '_' are not allowed")
    return None, path, i


_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_NOT = frozenset({("path", "NOT"), ("op", "!")})
_AND = frozenset({("path", "AND"), ("op", "&&")})
_OR = frozenset({("path", "OR"), ("op", "||")})
_COMPARISONS = frozenset({"==", "!=", "<", ">", "<=", ">="})


def _truth(value: Any) -> bool:
    """Perl truth: undefined, empty and ``"0"`` are false."""
    if value is None or value is False:
        return False
    if isinstance(value, (int, float, Decimal)):
        return value != 0
    text = _to_text(value)
    return text not in ("", "0")


def _compare(op: str, left: Any, right: Any) -> bool:
    if op in ("==", "!="):
        return (_to_text(left) == _to_text(right)) == (op == "==")
    a, b = _number(left), _number(right)
    if isinstance(a, float) or isinstance(b, float):
        a, b = float(a), float(b)
    else:
        a, b = Decimal(a), Decimal(b)
    return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]


class _Condition:
    """A compiled IF/ELSIF/UNLESS condition; ``test(context)`` never raises."""

    __slots__ = ("_evaluate",)

    def __init__(self, tokens: list[tuple[str, str]], where: str) -> None:
        evaluate, i = self._or(tokens, 0, where)
        if i != len(tokens):
            raise TemplateError(f"{where}: unexpected {tokens[i][1]!r} in condition")
        self._evaluate = evaluate

    def test(self, context: Mapping[str, Any]) -> bool:
        try:
            return bool(self._evaluate(context))
        except Exception:  # a hostile object in the context must not break a SIP response
            return False

    def _or(self, tokens, i, where):
        left, i = self._and(tokens, i, where)
        while i < len(tokens) and tokens[i] in _OR:
            right, i = self._and(tokens, i + 1, where)
            left = (lambda a, b: lambda c: a(c) or b(c))(left, right)
        return left, i

    def _and(self, tokens, i, where):
        left, i = self._not(tokens, i, where)
        while i < len(tokens) and tokens[i] in _AND:
            right, i = self._not(tokens, i + 1, where)
            left = (lambda a, b: lambda c: a(c) and b(c))(left, right)
        return left, i

    def _not(self, tokens, i, where):
        if i < len(tokens) and tokens[i] in _NOT:
            inner, i = self._not(tokens, i + 1, where)
            return (lambda a: lambda c: not a(c))(inner), i
        return self._comparison(tokens, i, where)

    def _comparison(self, tokens, i, where):
        if i < len(tokens) and tokens[i] == ("punct", "("):
            inner, i = self._or(tokens, i + 1, where)
            if i >= len(tokens) or tokens[i] != ("punct", ")"):
                raise TemplateError(f"{where}: missing ')' in condition")
            return inner, i + 1
        left, i = self._value(tokens, i, where)
        if i < len(tokens) and tokens[i][0] == "op" and tokens[i][1] in _COMPARISONS:
            op = tokens[i][1]
            right, i = self._value(tokens, i + 1, where)
            return (lambda a, b: lambda c: _compare(op, a(c), b(c)))(left, right), i
        return (lambda a: lambda c: _truth(a(c)))(left), i

    @staticmethod
    def _value(tokens, i, where):
        literal, path, i = _operand(tokens, i, where)
        if path is None:
            return (lambda v: lambda c: v)(literal), i
        return (lambda p: lambda c: _resolve(c, p))(path), i


#: Control directives of the conditional blocks.
_CONTROL = ("IF", "ELSIF", "UNLESS", "ELSE", "END")


def _parse_control(body: str, where: str) -> tuple[str, _Condition | None] | None:
    """``(keyword, condition)`` for an IF/ELSIF/UNLESS/ELSE/END directive, else ``None``."""
    tokens = _tokens(body, where)
    if not tokens or tokens[0][0] != "path" or tokens[0][1] not in _CONTROL:
        return None
    keyword = tokens[0][1]
    if keyword in ("ELSE", "END"):
        if len(tokens) > 1:
            raise TemplateError(f"{where}: {keyword} takes nothing after it")
        return keyword, None
    if len(tokens) == 1:
        raise TemplateError(f"{where}: {keyword} needs a condition")
    return keyword, _Condition(tokens[1:], where)


def _parse_directive(body: str, where: str) -> _Expression | None:
    tokens = _tokens(body, where)
    if not tokens:
        return None
    if tokens[0] == ("path", "GET"):
        tokens = tokens[1:]
        if not tokens:
            raise TemplateError(f"{where}: GET needs a variable")
    literal, path, i = _operand(tokens, 0, where)
    filters = []
    while i < len(tokens):
        if tokens[i] != ("punct", "|"):
            raise TemplateError(f"{where}: expected '|' before {tokens[i][1]!r}")
        i += 1
        if i >= len(tokens) or tokens[i][0] != "path" or "." in tokens[i][1]:
            raise TemplateError(f"{where}: expected a filter name after '|'")
        name = tokens[i][1]
        i += 1
        args: list[Any] = []
        if i < len(tokens) and tokens[i] == ("punct", "("):
            i += 1
            while True:
                if i >= len(tokens):
                    raise TemplateError(f"{where}: missing ')' after {name} arguments")
                kind, text = tokens[i]
                if (kind, text) == ("punct", ")") and not args:
                    i += 1
                    break
                if kind not in ("str", "num"):
                    raise TemplateError(f"{where}: {name}() arguments must be literals")
                args.append(_literal(kind, text))
                i += 1
                if i < len(tokens) and tokens[i] == ("punct", ","):
                    i += 1
                    continue
                if i < len(tokens) and tokens[i] == ("punct", ")"):
                    i += 1
                    break
                raise TemplateError(f"{where}: missing ')' after {name} arguments")
        filters.append(_make_filter(name, args, where))
    return _Expression(literal, path, filters)


def _find_close(source: str, start: int) -> int:
    """Index of the ``%]`` closing the directive whose body starts at ``start``; -1 if none."""
    i = start
    n = len(source)
    quote = ""
    while i < n:
        ch = source[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "%" and source.startswith("%]", i):
            return i
        i += 1
    return -1


class _Branches:
    """One IF/UNLESS block: ``(condition, negate, nodes)`` tried in order; ELSE has no
    condition."""

    __slots__ = ("branches",)

    def __init__(self) -> None:
        self.branches: list[tuple[_Condition | None, bool, list]] = []


def _nest(parts: list[Any]) -> tuple:
    """Turn the flat list of text, expressions and control directives into a tree."""
    root: list = []
    stack: list[tuple[_Branches, list, bool, str]] = []  # block, outer nodes, else seen, where
    nodes = root
    for part in parts:
        if not isinstance(part, tuple):
            nodes.append(part)
            continue
        keyword, condition, where = part
        if keyword in ("IF", "UNLESS"):
            block = _Branches()
            nodes.append(block)
            stack.append((block, nodes, False, where))
            nodes = []
            block.branches.append((condition, keyword == "UNLESS", nodes))
            continue
        if not stack:
            raise TemplateError(f"{where}: {keyword} without IF")
        block, outer, else_seen, opened = stack[-1]
        if keyword == "END":
            stack.pop()
            nodes = outer
            continue
        if else_seen:
            raise TemplateError(f"{where}: {keyword} after ELSE")
        nodes = []
        block.branches.append((condition, False, nodes))
        stack[-1] = (block, outer, keyword == "ELSE", opened)
    if stack:
        raise TemplateError(f"{stack[-1][3]}: IF without END")
    return tuple(root)


def _render(nodes: Sequence[Any], context: Mapping[str, Any], out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, _Branches):
            for condition, negate, branch in node.branches:
                if condition is None or condition.test(context) != negate:
                    _render(branch, context, out)
                    break
        else:
            out.append(node.render(context))


class Template:
    """A compiled template; ``render(**context)`` returns the text."""

    __slots__ = ("source", "_parts")

    def __init__(self, source: str) -> None:
        if not isinstance(source, str):
            raise TemplateError("template source must be a string")
        self.source = source
        parts: list[Any] = []
        pos = 0
        pending_post: str | None = None
        while True:
            start = source.find("[%", pos)
            text = source[pos:] if start < 0 else source[pos:start]
            if pending_post is not None:
                text = _POST_CHOMP[pending_post](text)
                pending_post = None
            if start < 0:
                if text:
                    parts.append(text)
                break
            where = f"line {source.count(chr(10), 0, start) + 1}"
            body_start = start + 2
            if body_start < len(source) and source[body_start] in _PRE_CHOMP:
                text = _PRE_CHOMP[source[body_start]](text)
                body_start += 1
            if text:
                parts.append(text)
            close = _find_close(source, body_start)
            if close < 0:
                raise TemplateError(f"{where}: '[%' without a closing '%]'")
            body_end = close
            if body_end > body_start and source[body_end - 1] in _POST_CHOMP:
                pending_post = source[body_end - 1]
                body_end -= 1
            body = source[body_start:body_end]
            if not body.lstrip().startswith("#"):
                control = _parse_control(body, where)
                if control is not None:
                    parts.append((*control, where))
                else:
                    expr = _parse_directive(body, where)
                    if expr is not None:
                        parts.append(expr)
            pos = close + 2
        self._parts = _nest(parts)

    def render(self, **context: Any) -> str:
        """Render with the given variables; never raises."""
        out: list[str] = []
        _render(self._parts, context, out)
        return "".join(out)

    def __repr__(self) -> str:
        return f"Template({self.source!r})"
