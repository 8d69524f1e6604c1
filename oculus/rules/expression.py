"""Parse and compile rule conditions such as ``change_pct(crypto.price.btc_usd, 1h) < -5``.

A hand-written tokenizer and recursive-descent parser build a small syntax
tree; nothing is ever passed to ``eval``. The tree is type-checked (numbers
versus booleans) and compiled into nested closures that read values from a
data snapshot. Evaluation uses three-valued logic: a symbol without recent
data is ``None`` (unknown), ``None`` propagates through arithmetic and
comparisons, ``true or unknown`` is true and ``false and unknown`` is false.

Grammar, lowest precedence first::

    condition  := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | comparison
    comparison := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)?
    sum        := product (("+" | "-") product)*
    product    := unary (("*" | "/" | "%") unary)*
    unary      := "-" unary | primary
    primary    := number | "true" | "false" | symbol | call | "(" or ")"
    call       := function "(" symbol ["," duration] ")"

A bare symbol is a dotted name such as ``net.http.api.status``. Inside it,
``-`` and ``:`` belong to the name when a letter or digit follows them, so
``pred.poly.fed-cut.yes`` is one symbol and subtraction after a symbol needs a
space (``a.b.c - 1``). Any symbol can also be quoted: ``"net.tcp.redis:6379.rtt_ms"``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from oculus.config.values import format_duration, parse_duration

NUMBER, DURATION, NAME, QUOTED, OPERATOR, END = "number", "duration", "name", "quoted", "operator", "end"
KEYWORDS = {"and", "or", "not", "true", "false"}
COMPARISONS = {"<", "<=", ">", ">=", "==", "!="}

# Function name -> (argument kinds, result type). "window" functions read samples in (now - window, now].
FUNCTIONS = {
    "avg": (("symbol", "duration"), "number"),
    "min": (("symbol", "duration"), "number"),
    "max": (("symbol", "duration"), "number"),
    "last": (("symbol", "duration"), "number"),
    "count": (("symbol", "duration"), "number"),
    "change": (("symbol", "duration"), "number"),
    "change_pct": (("symbol", "duration"), "number"),
    "stale": (("symbol", "duration"), "boolean"),
    "down": (("symbol",), "boolean"),
}

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<duration>\d+(?:\.\d+)?(?:ms|s|m|h|d)(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))*(?![A-Za-z0-9_]))
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?![A-Za-z_]))
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:[-:][A-Za-z0-9_]+)*(?:\.[A-Za-z0-9_]+(?:[-:][A-Za-z0-9_]+)*)*)
  | (?P<quoted>"[^"]*"|'[^']*')
  | (?P<operator><=|>=|==|!=|<|>|\+|-|\*|/|%|\(|\)|,)
""", re.VERBOSE)


class ExpressionError(ValueError):
    """A condition that cannot be parsed or type-checked; `column` is 1-based."""

    def __init__(self, column: int, message: str):
        super().__init__(f"column {column}: {message}")
        self.column = column
        self.message = message


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    column: int

    def describe(self) -> str:
        return "the end of the condition" if self.kind == END else f'"{self.text}"'


def tokenize(text: str) -> list[Token]:
    """Split a condition into tokens; raise ExpressionError at the first character that starts none."""
    tokens = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            _reject_character(text, position)
        kind = match.lastgroup
        if kind != "space":
            value = match.group()
            if kind == "quoted":
                if not value[1:-1].strip():
                    raise ExpressionError(position + 1, "expected a symbol name inside the quotes, got an empty string")
                value = value[1:-1]
            tokens.append(Token(kind, value, position + 1))
        position = match.end()
    tokens.append(Token(END, "", len(text) + 1))
    return tokens


def _reject_character(text: str, position: int) -> None:
    character = text[position]
    hints = {"&": "; write 'and' instead of '&&'", "|": "; write 'or' instead of '||'",
             "!": "; write 'not' or '!='", "=": "; write '==' to compare"}
    if character in "\"'":
        raise ExpressionError(position + 1, f"unterminated quoted symbol: add the closing {character}")
    if character.isdigit() or character == ".":
        word = re.match(r"[\w.]+", text[position:]).group()
        raise ExpressionError(position + 1, f'invalid number "{word}"; a window is written like 30s, 5m, 1h or 1m30s')
    raise ExpressionError(position + 1, f'unexpected character "{character}"{hints.get(character, "")}')


# -- syntax tree ----------------------------------------------------------


@dataclass
class Node:
    column: int


@dataclass
class Number(Node):
    value: float


@dataclass
class Boolean(Node):
    value: bool


@dataclass
class Symbol(Node):
    name: str


@dataclass
class Call(Node):
    function: str
    symbol: str
    window: float | None  # seconds; None for functions without a window


@dataclass
class Unary(Node):
    operator: str  # "-" or "not"
    operand: Node


@dataclass
class Binary(Node):
    operator: str
    left: Node
    right: Node


class Parser:
    """Recursive-descent parser over the token list; each method parses one grammar rule."""

    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.current
        return token.kind == NAME and token.text.lower() == word

    def operator(self, *symbols: str) -> bool:
        return self.current.kind == OPERATOR and self.current.text in symbols

    def fail(self, expected: str, token: Token | None = None):
        token = token or self.current
        raise ExpressionError(token.column, f"expected {expected}, got {token.describe()}")

    def parse(self) -> Node:
        if self.current.kind == END:
            raise ExpressionError(1, "the condition is empty; write a comparison such as net.http.api.status != 200")
        tree = self.parse_or()
        if self.current.kind != END:
            if self.current.kind == OPERATOR and self.current.text == ")":
                raise ExpressionError(self.current.column, 'unmatched ")"')
            self.fail('an operator ("and", "or", a comparison or arithmetic) or the end of the condition')
        return tree

    def parse_or(self) -> Node:
        left = self.parse_and()
        while self.keyword("or"):
            token = self.advance()
            left = Binary(token.column, "or", left, self.parse_and())
        return left

    def parse_and(self) -> Node:
        left = self.parse_not()
        while self.keyword("and"):
            token = self.advance()
            left = Binary(token.column, "and", left, self.parse_not())
        return left

    def parse_not(self) -> Node:
        if self.keyword("not"):
            token = self.advance()
            return Unary(token.column, "not", self.parse_not())
        return self.parse_comparison()

    def parse_comparison(self) -> Node:
        left = self.parse_sum()
        if self.operator(*COMPARISONS):
            token = self.advance()
            left = Binary(token.column, token.text, left, self.parse_sum())
            if self.operator(*COMPARISONS):
                raise ExpressionError(self.current.column,
                                      "comparisons cannot be chained; join them with 'and' (a < b and b < c)")
        return left

    def parse_sum(self) -> Node:
        left = self.parse_product()
        while self.operator("+", "-"):
            token = self.advance()
            left = Binary(token.column, token.text, left, self.parse_product())
        return left

    def parse_product(self) -> Node:
        left = self.parse_unary()
        while self.operator("*", "/", "%"):
            token = self.advance()
            left = Binary(token.column, token.text, left, self.parse_unary())
        return left

    def parse_unary(self) -> Node:
        if self.operator("-"):
            token = self.advance()
            return Unary(token.column, "-", self.parse_unary())
        return self.parse_primary()

    def parse_primary(self) -> Node:
        token = self.current
        if token.kind == NUMBER:
            self.advance()
            return Number(token.column, float(token.text))
        if token.kind == DURATION:
            raise ExpressionError(token.column, f'a duration such as "{token.text}" is only allowed as the window '
                                  "argument of a function, for example avg(net.ping.gateway.rtt_ms, 5m)")
        if token.kind == QUOTED:
            self.advance()
            return Symbol(token.column, token.text)
        if token.kind == OPERATOR and token.text == "(":
            self.advance()
            inner = self.parse_or()
            if not self.operator(")"):
                self.fail(f'")" to close the "(" at column {token.column}')
            self.advance()
            return inner
        if token.kind == NAME:
            return self.parse_name()
        self.fail("a number, a symbol or a function call")

    def parse_name(self) -> Node:
        token = self.advance()
        lowered = token.text.lower()
        if lowered in ("true", "false"):
            return Boolean(token.column, lowered == "true")
        if lowered in KEYWORDS:
            raise ExpressionError(token.column, f'expected a number, a symbol or a function call, got "{token.text}"')
        if self.operator("("):
            return self.parse_call(token)
        if "." not in token.text:
            raise ExpressionError(token.column, f'unknown name "{token.text}": a symbol has dots '
                                  '(crypto.price.btc_usd); put other names in quotes ("my-symbol")')
        return Symbol(token.column, token.text)

    def parse_call(self, name: Token) -> Node:
        function = name.text.lower()
        if function not in FUNCTIONS:
            known = ", ".join(sorted(FUNCTIONS))
            raise ExpressionError(name.column, f'unknown function "{name.text}"; known functions: {known}')
        kinds, _ = FUNCTIONS[function]
        self.advance()  # "("

        symbol_token = self.current
        if symbol_token.kind not in (NAME, QUOTED) or (symbol_token.kind == NAME and "." not in symbol_token.text):
            self.fail(f"a symbol as the first argument of {function}()")
        self.advance()

        window = None
        if len(kinds) == 2:
            if not self.operator(","):
                self.fail(f"\",\" and a window such as 5m: {function}({symbol_token.text}, 5m)")
            self.advance()
            window_token = self.current
            if window_token.kind != DURATION:
                self.fail(f"a window duration such as 30s, 5m or 1h as the second argument of {function}()")
            self.advance()
            window = parse_duration(window_token.text)
            if window <= 0:
                raise ExpressionError(window_token.column, "the window must be longer than 0s")
        if not self.operator(")"):
            arguments = "one argument" if len(kinds) == 1 else "two arguments"
            self.fail(f'")": {function}() takes {arguments}')
        self.advance()
        return Call(name.column, function, symbol_token.text, window)


# -- type check -------------------------------------------------------------


def type_of(node: Node) -> str:
    """Return "number" or "boolean", raising ExpressionError where an operator gets the wrong type."""
    if isinstance(node, Number):
        return "number"
    if isinstance(node, (Boolean,)):
        return "boolean"
    if isinstance(node, Symbol):
        return "number"
    if isinstance(node, Call):
        return FUNCTIONS[node.function][1]
    if isinstance(node, Unary):
        wanted = "boolean" if node.operator == "not" else "number"
        _expect(node.operand, wanted, f'"{node.operator}"')
        return wanted
    if node.operator in ("and", "or"):
        _expect(node.left, "boolean", f'"{node.operator}"')
        _expect(node.right, "boolean", f'"{node.operator}"')
        return "boolean"
    _expect(node.left, "number", f'"{node.operator}"')
    _expect(node.right, "number", f'"{node.operator}"')
    return "boolean" if node.operator in COMPARISONS else "number"


def _expect(node: Node, wanted: str, where: str) -> None:
    if type_of(node) != wanted:
        what = "a comparison or a true/false function such as down()" if wanted == "boolean" else "a number"
        raise ExpressionError(_first_column(node), f"{where} needs {what} here")


def _first_column(node: Node) -> int:
    if isinstance(node, Binary):
        return _first_column(node.left)
    return node.column


# -- compiled condition -----------------------------------------------------


@dataclass(frozen=True)
class Requirement:
    """Data a condition reads: the latest sample of `symbol`, or a window of it when `window` is set."""

    symbol: str
    window: float | None = None


@dataclass
class Condition:
    """A parsed, type-checked condition, ready to evaluate against a data snapshot."""

    text: str
    tree: Node
    symbols: list[str]
    requirements: set[Requirement]
    evaluate: Callable = field(repr=False)
    value: Callable | None = field(repr=False)

    def __call__(self, data) -> tuple[bool | None, float | None]:
        """Return (result, value); result None means some symbol had no data."""
        result = self.evaluate(data)
        value = self.value(data) if self.value is not None else None
        return result, value


def compile_condition(text: str) -> Condition:
    """Parse, type-check and compile `text`; raise ExpressionError with the column of the problem."""
    if not isinstance(text, str):
        raise ExpressionError(1, "expected the condition as a string")
    tree = Parser(text).parse()
    if type_of(tree) != "boolean":
        raise ExpressionError(1, "the condition must be true or false: compare the value (> 100, != 200) "
                              "or use a function such as down(symbol)")
    requirements: set[Requirement] = set()
    symbols: list[str] = []
    evaluate = _compile(tree, requirements, symbols)
    value_node = _value_node(tree)
    value = _compile(value_node, set(), []) if value_node is not None else None
    return Condition(text, tree, symbols, requirements, evaluate, value)


def _value_node(node: Node) -> Node | None:
    """Return the node whose number is the alert's {value}: the left side of the first comparison."""
    if isinstance(node, Binary):
        if node.operator in COMPARISONS:
            return node.left
        return _value_node(node.left) or _value_node(node.right)
    if isinstance(node, Unary):
        return _value_node(node.operand)
    return None


def _compile(node: Node, requirements: set, symbols: list) -> Callable:
    if isinstance(node, (Number, Boolean)):
        constant = node.value
        return lambda data: constant
    if isinstance(node, Symbol):
        return _compile_symbol(node.name, requirements, symbols)
    if isinstance(node, Call):
        return _compile_call(node, requirements, symbols)
    if isinstance(node, Unary):
        operand = _compile(node.operand, requirements, symbols)
        if node.operator == "not":
            return lambda data: None if (v := operand(data)) is None else not v
        return lambda data: None if (v := operand(data)) is None else -v
    left = _compile(node.left, requirements, symbols)
    right = _compile(node.right, requirements, symbols)
    if node.operator == "and":
        return _and(left, right)
    if node.operator == "or":
        return _or(left, right)
    return _arithmetic(node.operator, left, right)


def _remember(symbol: str, symbols: list) -> None:
    if symbol not in symbols:
        symbols.append(symbol)


def _compile_symbol(name: str, requirements: set, symbols: list) -> Callable:
    requirements.add(Requirement(name))
    _remember(name, symbols)
    return lambda data: data.latest_value(name)


def _compile_call(node: Call, requirements: set, symbols: list) -> Callable:
    name, window, function = node.symbol, node.window, node.function
    _remember(name, symbols)
    if function == "down":
        requirements.add(Requirement(name))
        return lambda data: data.latest_failed(name)
    requirements.add(Requirement(name, window))
    return lambda data: data.window_function(function, name, window)


def _and(left: Callable, right: Callable) -> Callable:
    def evaluate(data):
        a = left(data)
        if a is False:
            return False
        b = right(data)
        if b is False:
            return False
        return None if a is None or b is None else True
    return evaluate


def _or(left: Callable, right: Callable) -> Callable:
    def evaluate(data):
        a = left(data)
        if a is True:
            return True
        b = right(data)
        if b is True:
            return True
        return None if a is None or b is None else False
    return evaluate


_OPERATIONS = {
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
    # Division or modulo by zero has no value, like a missing sample, rather than stopping the rule.
    "/": lambda a, b: a / b if b else None, "%": lambda a, b: a % b if b else None,
}


def _arithmetic(operator: str, left: Callable, right: Callable) -> Callable:
    operation = _OPERATIONS[operator]

    def evaluate(data):
        a = left(data)
        if a is None:
            return None
        b = right(data)
        if b is None:
            return None
        return operation(a, b)
    return evaluate


def describe_requirement(requirement: Requirement) -> str:
    if requirement.window is None:
        return requirement.symbol
    return f"{requirement.symbol} over {format_duration(requirement.window)}"
