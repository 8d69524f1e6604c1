"""The rule condition parser: valid and invalid expressions, and three-valued evaluation."""

from __future__ import annotations

import pytest

from oculus.rules.expression import ExpressionError, Requirement, compile_condition

VALID = [
    ("crypto.price.btc_usd > 100000", ["crypto.price.btc_usd"]),
    ("net.http.api_example.status != 200", ["net.http.api_example.status"]),
    ("net.ping.gateway.rtt_ms >= 50.5", ["net.ping.gateway.rtt_ms"]),
    ("crypto.sentiment.fng <= 20", ["crypto.sentiment.fng"]),
    ("stock.price.aapl < 150", ["stock.price.aapl"]),
    ("pred.poly.fed-cut.yes > 0.6", ["pred.poly.fed-cut.yes"]),
    ("net.tcp.redis:6379.rtt_ms > 50", ["net.tcp.redis:6379.rtt_ms"]),
    ('"net.tcp.redis:6379.rtt_ms" > 50', ["net.tcp.redis:6379.rtt_ms"]),
    ("'pred.poly.fed-cut.yes' == 1", ["pred.poly.fed-cut.yes"]),
    ("crypto.price.btc_usd / crypto.price.eth_usd > 20", ["crypto.price.btc_usd", "crypto.price.eth_usd"]),
    ("change_pct(crypto.price.btc_usd, 1h) < -5", ["crypto.price.btc_usd"]),
    ("avg(net.ping.gateway.rtt_ms, 5m) > 2 * min(net.ping.gateway.rtt_ms, 1h)", ["net.ping.gateway.rtt_ms"]),
    ("stale(crypto.sentiment.fng, 1m30s)", ["crypto.sentiment.fng"]),
    ("down(net.http.api_example.status) or net.http.api_example.status != 200", ["net.http.api_example.status"]),
    ("not (stock.price.aapl > 1 and stock.price.aapl < 2)", ["stock.price.aapl"]),
    ("count(net.ping.gateway.rtt_ms, 10m) == 0 AND NOT down(net.ping.gateway.rtt_ms)", ["net.ping.gateway.rtt_ms"]),
    ("pred.poly.fed-cut.yes - 0.5 > 0", ["pred.poly.fed-cut.yes"]),
    ("-crypto.price.btc_usd % 7 < 1e3", ["crypto.price.btc_usd"]),
    ("last(\"custom.plugin.x.error\", 1d) == 1", ["custom.plugin.x.error"]),
    ("true", []),
]


@pytest.mark.parametrize("text, symbols", VALID, ids=[case[0] for case in VALID])
def test_valid_condition_parses(text, symbols):
    assert compile_condition(text).symbols == symbols


INVALID = [
    ("", 1, "the condition is empty; write a comparison such as net.http.api.status != 200"),
    ("crypto.price.btc_usd >", 23, "expected a number, a symbol or a function call, got the end of the condition"),
    ("crypto.price.btc_usd > > 5", 24, 'expected a number, a symbol or a function call, got ">"'),
    ("(crypto.price.btc_usd > 5", 26, 'expected ")" to close the "(" at column 1, got the end of the condition'),
    ("crypto.price.btc_usd > 5)", 25, 'unmatched ")"'),
    ("crypto.price.btc_usd 5", 22, 'expected an operator ("and", "or", a comparison or arithmetic) '
                                   'or the end of the condition, got "5"'),
    ("foo(crypto.price.btc_usd) > 1", 1,
     'unknown function "foo"; known functions: avg, change, change_pct, count, down, last, max, min, stale'),
    ("eval(crypto.price.btc_usd) > 1", 1,
     'unknown function "eval"; known functions: avg, change, change_pct, count, down, last, max, min, stale'),
    ("avg(crypto.price.btc_usd) > 1", 25,
     'expected "," and a window such as 5m: avg(crypto.price.btc_usd, 5m), got ")"'),
    ("avg(crypto.price.btc_usd, 5) > 1", 27,
     'expected a window duration such as 30s, 5m or 1h as the second argument of avg(), got "5"'),
    ("avg(5, 5m) > 1", 5, 'expected a symbol as the first argument of avg(), got "5"'),
    ("down(net.http.a.status, 5m)", 23, 'expected ")": down() takes one argument, got ","'),
    ("crypto.price.btc_usd > 5m", 24, 'a duration such as "5m" is only allowed as the window argument of a '
                                      "function, for example avg(net.ping.gateway.rtt_ms, 5m)"),
    ("crypto.price.btc_usd && 1", 22, "unexpected character \"&\"; write 'and' instead of '&&'"),
    ("crypto.price.btc_usd = 1", 22, "unexpected character \"=\"; write '==' to compare"),
    ("crypto.price.btc_usd.upper() > 1", 1, 'unknown function "crypto.price.btc_usd.upper"; known functions: '
                                            "avg, change, change_pct, count, down, last, max, min, stale"),
    ("crypto.price.btc_usd[0] > 1", 21, 'unexpected character "["'),
    ("btc > 1", 1, 'unknown name "btc": a symbol has dots (crypto.price.btc_usd); put other names in quotes '
                   '("my-symbol")'),
    ("1 < crypto.price.btc_usd < 2", 26, "comparisons cannot be chained; join them with 'and' (a < b and b < c)"),
    ("crypto.price.btc_usd + 1", 1, "the condition must be true or false: compare the value (> 100, != 200) "
                                    "or use a function such as down(symbol)"),
    ("crypto.price.btc_usd and true", 1,
     '"and" needs a comparison or a true/false function such as down() here'),
    ("down(net.http.a.status) > 1", 1, '">" needs a number here'),
    ('"net.tcp.redis:6379.rtt_ms > 50', 1, "unterminated quoted symbol: add the closing \""),
    ('"" > 1', 1, "expected a symbol name inside the quotes, got an empty string"),
    ("avg(crypto.price.btc_usd, 0s) > 1", 27, "the window must be longer than 0s"),
    ("crypto.price.btc_usd > 5x", 24, 'invalid number "5x"; a window is written like 30s, 5m, 1h or 1m30s'),
]


@pytest.mark.parametrize("text, column, message", INVALID, ids=[case[0] or "empty" for case in INVALID])
def test_invalid_condition_message(text, column, message):
    with pytest.raises(ExpressionError) as caught:
        compile_condition(text)
    assert caught.value.message == message
    assert caught.value.column == column


class Data:
    """A stand-in for a Snapshot: fixed latest values and window results, None meaning no data."""

    def __init__(self, latest=None, windows=None, failed=None):
        self.latest = latest or {}
        self.windows = windows or {}
        self.failed = failed or {}

    def latest_value(self, symbol):
        return self.latest.get(symbol)

    def latest_failed(self, symbol):
        return self.failed.get(symbol)

    def window_function(self, function, symbol, window):
        return self.windows.get((function, symbol, window))


A, B = "x.y.a", "x.y.b"

EVALUATIONS = [
    ("x.y.a > 1", {A: 2.0}, (True, 2.0)),
    ("x.y.a > 1", {}, (None, None)),
    ("x.y.a > 1 or x.y.b > 1", {B: 5.0}, (True, None)),
    ("x.y.a > 1 and x.y.b > 1", {B: 0.0}, (False, None)),
    ("x.y.a > 1 and x.y.b > 1", {B: 5.0}, (None, None)),
    ("x.y.a > 1 or x.y.b > 1", {B: 0.0}, (None, None)),
    ("not x.y.a > 1", {}, (None, None)),
    ("x.y.a / x.y.b > 1", {A: 1.0, B: 0.0}, (None, None)),
    ("x.y.a - x.y.b * 2 == -5", {A: 1.0, B: 3.0}, (True, -5.0)),
    ("(x.y.a + 1) * 2 == 6", {A: 2.0}, (True, 6.0)),
    ("x.y.a % 3 == 1", {A: 7.0}, (True, 1.0)),
]


@pytest.mark.parametrize("text, latest, expected", EVALUATIONS, ids=[f"{c[0]} {c[1]}" for c in EVALUATIONS])
def test_condition_three_valued_result(text, latest, expected):
    assert compile_condition(text)(Data(latest)) == expected


def test_condition_reads_windows_and_down():
    condition = compile_condition("change_pct(x.y.a, 1h) < -5 and not down(x.y.b)")
    data = Data(windows={("change_pct", A, 3600.0): -6.0}, failed={B: False})

    assert condition(data) == (True, -6.0)
    assert condition.requirements == {Requirement(A, 3600.0), Requirement(B)}
