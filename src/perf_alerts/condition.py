"""The policy condition language: a tiny, safe expression parser (no `eval`).

Pure syntax and three-valued evaluation over a variable getter; no store, no analytics.
It sits below `config` (which validates a policy's `when:` with it) and `manage.policies`
(which computes the variables and evaluates); `manage.condition` re-exports it.

    health < 50 and firing.critical > 0
    not (pending.total == 0) or breaches >= 1
    health.researcher < 60

Grammar (lowest to highest precedence)::

    expr       := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | comparison
    comparison := operand (("<" | "<=" | ">" | ">=" | "==" | "!=") operand)?
    operand    := NUMBER | VARIABLE | "true" | "false" | "(" expr ")"

Variables: `health` (overall health score 0-100, None without data), `health.<agent>`,
`firing.<critical|warning|info|total>`, `pending.<...>`, `anomalies` (series with an anomaly
in the last hour), `breaches` (threshold breaches predicted within 6 h).

Unknown values (a health score with no data) make a comparison *unknown*; `and`/`or`/`not`
follow three-valued (Kleene) logic and an unknown result is false: a policy never acts on
missing data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from perf_alerts.errors import InputError

SEVERITY_KEYS = ("critical", "warning", "info", "total")
SIMPLE_VARIABLES = ("health", "anomalies", "breaches")
VARIABLE_HELP = ("health, health.<agent>, firing.critical, firing.warning, firing.info, firing.total, "
                 "pending.critical, pending.warning, pending.info, pending.total, anomalies, breaches")
COMPARISONS = ("<", "<=", ">", ">=", "==", "!=")


class ConditionError(InputError, ValueError):
    """A condition that does not parse; the message says where and what is valid."""


_TOKEN_RE = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d*)?|\.\d+)(?![A-Za-z_])|(?P<op><=|>=|==|!=|<|>)|(?P<lp>\()|(?P<rp>\))"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_\-]*(?:\.[A-Za-z_][A-Za-z0-9_\-]*)*))"
)


@dataclass(frozen=True)
class _Tok:
    kind: str  # num, op, lp, rp, name, kw, end
    text: str
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    n = len(text)
    while True:
        while pos < n and text[pos].isspace():
            pos += 1
        if pos >= n:
            break
        m = _TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            ch = text[pos]
            hint = " (use == for equality)" if ch == "=" else (" (use and / or / not)" if ch in "&|!" else "")
            raise ConditionError(f"unexpected character {ch!r} at column {pos + 1}{hint}")
        kind = m.lastgroup or ""
        tok = m.group(kind)
        start = m.start(kind)
        if kind == "name" and tok in ("and", "or", "not", "true", "false"):
            kind = "kw"
        out.append(_Tok(kind, tok, start))
        pos = m.end()
    out.append(_Tok("end", "", n))
    return out


# AST: tuples, evaluated by `_eval`
Node = tuple[Any, ...]


def check_variable(name: str) -> None:
    if name in SIMPLE_VARIABLES:
        return
    head, _, rest = name.partition(".")
    if head == "health" and rest and "." not in rest:
        return
    if head in ("firing", "pending") and rest in SEVERITY_KEYS:
        return
    if head in ("firing", "pending"):
        raise ConditionError(f"unknown variable {name!r}; {head} takes one of {', '.join(SEVERITY_KEYS)} "
                             f"(e.g. {head}.critical)")
    raise ConditionError(f"unknown variable {name!r}; valid: {VARIABLE_HELP}")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0
        self.variables: set[str] = set()

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def where(self, t: _Tok) -> str:
        return "at the end" if t.kind == "end" else f"at column {t.pos + 1} ({t.text!r})"

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise ConditionError("empty condition; write e.g. `health < 50 and firing.critical > 0`")
        node = self.or_expr()
        t = self.peek()
        if t.kind != "end":
            raise ConditionError(f"unexpected {t.text!r} at column {t.pos + 1}; expected and, or or the end")
        return node

    def or_expr(self) -> Node:
        node = self.and_expr()
        while self.peek().kind == "kw" and self.peek().text == "or":
            self.take()
            node = ("or", node, self.and_expr())
        return node

    def and_expr(self) -> Node:
        node = self.not_expr()
        while self.peek().kind == "kw" and self.peek().text == "and":
            self.take()
            node = ("and", node, self.not_expr())
        return node

    def not_expr(self) -> Node:
        if self.peek().kind == "kw" and self.peek().text == "not":
            self.take()
            return ("not", self.not_expr())
        return self.comparison()

    def comparison(self) -> Node:
        left = self.operand()
        if self.peek().kind == "op":
            op = self.take().text
            right = self.operand()
            if self.peek().kind == "op":
                t = self.peek()
                raise ConditionError(f"chained comparison at column {t.pos + 1}; combine comparisons with and")
            return ("cmp", op, left, right)
        return ("truth", left)

    def operand(self) -> Node:
        t = self.take()
        if t.kind == "num":
            return ("num", float(t.text))
        if t.kind == "name":
            check_variable(t.text)
            self.variables.add(t.text)
            return ("var", t.text)
        if t.kind == "kw" and t.text in ("true", "false"):
            return ("bool", t.text == "true")
        if t.kind == "lp":
            node = self.or_expr()
            close = self.take()
            if close.kind != "rp":
                raise ConditionError(f"missing ')' {self.where(close)} (opened at column {t.pos + 1})")
            return node
        raise ConditionError(f"expected a number, a variable or '(' {self.where(t)}")


def _cmp(op: str, a: Any, b: Any) -> bool | None:
    if a is None or b is None:
        return None
    if isinstance(a, bool) or isinstance(b, bool):
        a, b = float(a), float(b)
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "==": a == b, "!=": a != b}[op]


def _truth(v: Any) -> bool | None:
    if v is None:
        return None
    return bool(v)


def _eval(node: Node, get: Callable[[str], Any]) -> Any:
    kind = node[0]
    if kind == "num" or kind == "bool":
        return node[1]
    if kind == "var":
        return get(node[1])
    if kind == "cmp":
        return _cmp(node[1], _eval(node[2], get), _eval(node[3], get))
    if kind == "truth":
        return _truth(_eval(node[1], get))
    if kind == "not":
        v = _truth(_eval(node[1], get))
        return None if v is None else not v
    if kind == "and":
        a = _truth(_eval(node[1], get))
        if a is False:
            return False
        b = _truth(_eval(node[2], get))
        if b is False:
            return False
        return None if a is None or b is None else True
    if kind == "or":
        a = _truth(_eval(node[1], get))
        if a is True:
            return True
        b = _truth(_eval(node[2], get))
        if b is True:
            return True
        return None if a is None or b is None else False
    raise AssertionError(kind)


@dataclass(frozen=True)
class Condition:
    text: str
    tree: Any
    variables: frozenset[str]

    def evaluate(self, values: Mapping[str, Any] | Callable[[str], Any]) -> bool:
        """True only when the condition is definitely true (unknown → False)."""
        get = values if callable(values) else (lambda k: values.get(k))  # type: ignore[union-attr]
        return _eval(self.tree, get) is True

    def __str__(self) -> str:
        return self.text


def parse_condition(text: str) -> Condition:
    if not isinstance(text, str):
        raise ConditionError("a condition must be a string like `health < 50 and firing.critical > 0`")
    p = _Parser(text)
    tree = p.parse()
    return Condition(text.strip(), tree, frozenset(p.variables))
