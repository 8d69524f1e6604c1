"""Polymarket odds: outcome prices, volume and liquidity from the Gamma API, midpoints from the CLOB.

One collector follows one market (by slug or numeric id) or one event (by
slug, where each option of the event is a Yes/No market of its own). When the market or event
has closed, its final prices are recorded once, tagged closed or resolved,
and the collector stops polling it.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

import duckdb

from oculus.collectors.base import Reading
from oculus.collectors.market import MarketCollector, base_url, market_fields
from oculus.collectors.provider import (
    PERMANENT,
    TRANSIENT,
    Provider,
    ProviderError,
    number,
    utc_from_iso,
    utc_from_unix,
)
from oculus.config.schema import Field, Invalid, boolean
from oculus.config.values import reveal
from oculus.logs import RateLimitedLog

log = logging.getLogger(__name__)

GAMMA_URL = "https://gamma-api.polymarket.com"
CLOB_URL = "https://clob.polymarket.com"
GAMMA, CLOB = "polymarket_gamma", "polymarket_clob"
OPEN, CLOSED, RESOLVED = "open", "closed", "resolved"
FINAL_STATES = (CLOSED, RESOLVED)
# Names of per-market symbols. An outcome or option label that would take one of them gets a suffix.
RESERVED_NAMES = ("volume", "liquidity", "mid")

_UNSAFE = re.compile(r"[^a-z0-9_:\-]")
_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]*")


def symbol_safe(label: str) -> str:
    """Lower-case `label` and replace each character outside [a-z0-9_:-] with '_'.

    "25 bps decrease" becomes 25_bps_decrease and "25+ bps increase" becomes
    25__bps_increase: one '_' per replaced character, so the mapping is easy to predict.
    """
    return _UNSAFE.sub("_", label.strip().lower())


def unique_names(labels: list[str]) -> list[str]:
    """Return a symbol-safe name per label. A name that is empty, reserved or taken gets _<position> appended."""
    names: list[str] = []
    for position, label in enumerate(labels, start=1):
        name = symbol_safe(label)
        if not name or name in RESERVED_NAMES or name in names:
            name = f"{name}_{position}" if name else f"option_{position}"
        names.append(name)
    return names


# -- settings --------------------------------------------------------------


def _identifier(value, expected: str) -> str:
    # Slugs and ids are public identifiers that end up in tags, so a ${ENV} value is used as plain text.
    value = reveal(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and _SLUG.fullmatch(value.strip()):
        return value.strip()
    raise Invalid(f"expected {expected}, got {value!r}")


def market_slug(value) -> str:
    return _identifier(value, "a market slug such as fed-rate-cut-by-june-30-2026 (the end of the market's URL)")


def market_id(value) -> str:
    return _identifier(value, "a numeric market id such as 604217, or a market slug")


def event_slug(value) -> str:
    return _identifier(value, "an event slug such as fed-decision-in-april-2026 (the end of the event's URL)")


# -- Gamma responses -------------------------------------------------------


@dataclass
class Outcome:
    label: str
    # The price as sent, such as "0.535". It is parsed when the reading is built, so a bad one fails one reading.
    price: object
    token_id: str | None


@dataclass
class Market:
    id: str
    slug: str
    question: str
    title: str  # groupItemTitle: the option label inside an event
    state: str
    accepting_orders: bool
    end_date: str
    closed_time: str
    outcomes: list[Outcome]
    volume: float | None
    liquidity: float | None

    def yes(self) -> Outcome | None:
        """Return the outcome labelled Yes, or the first outcome of a market with other labels (Up/Down, teams)."""
        for outcome in self.outcomes:
            if outcome.label.strip().lower() == "yes":
                return outcome
        return self.outcomes[0] if self.outcomes else None


def _decode_list(raw: dict, key: str, required: bool = True) -> list:
    """Decode a field that Gamma sends as a JSON array encoded in a string (outcomes, outcomePrices, ...)."""
    value = raw.get(key)
    if value is None or value == "":
        if required:
            raise ValueError(f"the market has no {key}")
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError(f"{key} is not a JSON array: {value[:60]!r}") from None
    if not isinstance(value, list):
        raise ValueError(f"{key} is not a JSON array")
    return value


def _first_number(raw: dict, *keys: str) -> float | None:
    """Return the value of the first of `keys` that is a number, so volumeNum is preferred to the volume string."""
    for key in keys:
        try:
            value = number(raw.get(key))
        except ValueError:
            continue
        if value is not None:
            return value
    return None


def _is_resolved(raw: dict) -> bool:
    if raw.get("umaResolutionStatus") == "resolved":
        return True
    try:
        return "resolved" in _decode_list(raw, "umaResolutionStatuses", required=False)
    except ValueError:
        return False


def market_state(raw: dict) -> str:
    """Return open, closed or resolved. Only `closed` counts, because `active` stays true on closed markets."""
    if raw.get("closed") is not True:
        return OPEN
    return RESOLVED if _is_resolved(raw) else CLOSED


def _iso_text(value) -> str:
    """Normalise a Gamma date ('2026-03-02 18:14:07+00' or ISO 8601) to ISO 8601 UTC. Unreadable text is kept as is."""
    if not value:
        return ""
    try:
        return utc_from_iso(str(value)).isoformat() + "Z"
    except ValueError:
        return str(value)


def parse_market(raw) -> Market:
    """Build a Market from a Gamma market object, or raise ValueError when its outcome arrays do not match."""
    if not isinstance(raw, dict):
        raise ValueError(f"expected a market object, got {type(raw).__name__}")
    labels = _decode_list(raw, "outcomes")
    prices = _decode_list(raw, "outcomePrices")
    tokens = _decode_list(raw, "clobTokenIds", required=False)
    if len(prices) != len(labels):
        raise ValueError(f"{len(labels)} outcomes but {len(prices)} outcomePrices")
    if tokens and len(tokens) != len(labels):
        raise ValueError(f"{len(labels)} outcomes but {len(tokens)} clobTokenIds")

    outcomes = [Outcome(str(label), price, str(tokens[i]) if tokens else None)
                for i, (label, price) in enumerate(zip(labels, prices, strict=True))]
    return Market(
        id=str(raw.get("id") or ""),
        slug=str(raw.get("slug") or ""),
        question=str(raw.get("question") or ""),
        title=str(raw.get("groupItemTitle") or ""),
        state=market_state(raw),
        accepting_orders=raw.get("acceptingOrders") is True,
        end_date=_iso_text(raw.get("endDate") or raw.get("endDateIso")),
        closed_time=_iso_text(raw.get("closedTime")),
        outcomes=outcomes,
        volume=_first_number(raw, "volumeNum", "volume"),
        liquidity=_first_number(raw, "liquidityNum", "liquidity"),
    )


def event_state(raw: dict, markets: list[Market]) -> str:
    """Return the state of an event: resolved when it is closed and every option market has resolved."""
    if raw.get("closed") is not True:
        return OPEN
    return RESOLVED if markets and all(m.state == RESOLVED for m in markets) else CLOSED


# -- CLOB responses --------------------------------------------------------


@dataclass(frozen=True)
class BookTop:
    """Top of a CLOB order book; prices are Decimal, as sent."""

    best_bid: Decimal | None
    best_ask: Decimal | None
    ts: datetime | None
    last_trade: Decimal | None

    @property
    def spread(self) -> Decimal | None:
        if self.best_bid is None or self.best_ask is None:
            return None
        return self.best_ask - self.best_bid

    @property
    def mid(self) -> Decimal | None:
        if self.best_bid is None or self.best_ask is None:
            return None
        return (self.best_bid + self.best_ask) / 2


def _decimal(value, what: str) -> Decimal:
    try:
        parsed = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{what} is not a number: {value!r}") from None
    if not parsed.is_finite():
        raise ValueError(f"{what} is not a finite number: {value!r}")
    return parsed


def parse_book(body) -> BookTop:
    """Read the best levels of a /book response, or raise ValueError for another shape.

    The live wire lists bids ascending and asks descending, the published
    docs the reverse, so the best levels are found by price, not by position.
    """
    if not isinstance(body, dict) or not isinstance(body.get("bids"), list) or not isinstance(body.get("asks"), list):
        raise ValueError("expected an order book with bids and asks")
    bids = [_decimal(level.get("price"), "a bid price") for level in body["bids"] if isinstance(level, dict)]
    asks = [_decimal(level.get("price"), "an ask price") for level in body["asks"] if isinstance(level, dict)]
    stamp = body.get("timestamp")
    last_trade = body.get("last_trade_price")
    return BookTop(
        best_bid=max(bids) if bids else None,
        best_ask=min(asks) if asks else None,
        # The book timestamp is unix milliseconds in a string.
        ts=utc_from_unix(int(stamp) / 1000) if isinstance(stamp, str) and stamp.isdigit() else None,
        last_trade=_decimal(last_trade, "last_trade_price") if last_trade not in (None, "") else None,
    )


def _clob_number(body, key: str, endpoint: str) -> float:
    """Return body[key], a decimal string such as "0.535", as a probability, or raise ProviderError."""
    value = body.get(key) if isinstance(body, dict) else None
    try:
        parsed = number(value)
    except ValueError:
        parsed = None
    if parsed is None or not 0 <= parsed <= 1:
        raise ProviderError(TRANSIENT, f'{CLOB}: expected "{key}" between 0 and 1 in the {endpoint} response, '
                                       f"got {value!r}")
    return parsed


def fetch_midpoint(provider: Provider, token_id: str, deadline: float) -> float:
    """Return the order-book midpoint of one outcome token (GET /midpoint)."""
    body = provider.get("/midpoint", deadline, params={"token_id": token_id}).json()
    return _clob_number(body, "mid", "/midpoint")


def fetch_price(provider: Provider, token_id: str, side: str, deadline: float) -> float:
    """Return the best bid (side "buy") or the best ask (side "sell") of one outcome token (GET /price)."""
    # NOTE: the side is sent in lower case, as in the recorded requests; the API docs write BUY and SELL.
    body = provider.get("/price", deadline, params={"token_id": token_id, "side": side.lower()}).json()
    return _clob_number(body, "price", "/price")


def fetch_book(provider: Provider, token_id: str | None, deadline: float) -> BookTop:
    """Return the top of the order book of one outcome token (GET /book). A token_id of None is left out."""
    body = provider.get("/book", deadline, params={"token_id": token_id}).json()
    try:
        return parse_book(body)
    except ValueError as exc:
        raise ProviderError(TRANSIENT, f"{CLOB}: unexpected /book response: {exc}") from None


# -- readings --------------------------------------------------------------


def market_tags(market: Market) -> dict:
    """Tags stored with every reading of one market; the dashboard shows question and market_state."""
    tags = {
        "market_state": market.state,
        "question": market.question,
        "end_date": market.end_date,
        "slug": market.slug,
        "market_id": market.id,
        "accepting_orders": market.accepting_orders,
    }
    if market.closed_time:
        tags["closed_time"] = market.closed_time
    return tags


def probability_reading(symbol: str, outcome: Outcome, tags: dict, label: str | None = None) -> Reading:
    """Build the reading of a Gamma outcome price, read as an implied probability.

    A missing or out-of-range price fails this reading only. `label` (default:
    the outcome's label) is what the dashboard shows next to the value.
    """
    tags = {**tags, "label": label or outcome.label, "unit": "probability", "source": GAMMA}
    try:
        value = number(outcome.price)
    except ValueError:
        return Reading(symbol, None, False, f"price of {outcome.label!r} is not a number: {outcome.price!r}", tags)
    if value is None:
        return Reading(symbol, None, False, f"no price for {outcome.label!r} in the Gamma response", tags)
    if not 0 <= value <= 1:
        return Reading(symbol, None, False, f"price of {outcome.label!r} is {value}, outside 0..1", tags)
    return Reading(symbol, value, True, None, tags)


def amount_reading(symbol: str, value: float | None, what: str, tags: dict) -> Reading:
    """Build a volume or liquidity reading, in USDC because Polymarket settles in USDC."""
    tags = {**tags, "label": what, "unit": "USDC", "currency": "USDC", "source": GAMMA}
    if value is None:
        return Reading(symbol, None, False, f"no {what} in the Gamma response", tags)
    return Reading(symbol, value, True, None, tags)


class PolymarketCollector(MarketCollector):
    TYPE = "polymarket"
    CATEGORY = "pred"
    PROVIDER = GAMMA
    # Required, because each followed market needs its own collector and so its own name.
    DEFAULT_NAME = ""
    FIELDS = (
        Field("slug", market_slug, None, "Slug of one market: the end of its polymarket.com URL."),
        Field("id", market_id, None, "Numeric Gamma id of one market; a slug given here is looked up as a slug."),
        Field("event", event_slug, None,
              "Slug of an event whose options are separate Yes/No markets; one symbol per option."),
        Field("clob", boolean, True, "Also record the CLOB order-book midpoint of each open market's Yes token."),
        *market_fields("Polymarket Gamma", GAMMA_URL, 600.0),
        Field("clob_url", base_url, CLOB_URL,
              "Base URL of the Polymarket CLOB API; point it at a proxy or a test server."),
    )

    def __init__(self, spec):
        super().__init__(spec)
        self.final_state: str | None = None  # closed or resolved once the final prices are recorded
        self.history_checked = False
        self.known_symbols = [self.poly_symbol("volume"), self.poly_symbol("liquidity")]
        self._clob_log = RateLimitedLog(log, 600.0)

    @classmethod
    def check_options(cls, values: dict) -> list[tuple[str | None, str]]:
        given = [key for key in ("slug", "id", "event") if values.get(key) is not None]
        if len(given) != 1:
            found = f"got {', '.join(given)}" if given else "got none"
            return [(None, f"set exactly one of slug, id or event ({found})")]
        return []

    @classmethod
    def describe_target(cls, options: dict) -> str:
        for key in ("slug", "id", "event"):
            if options.get(key):
                return f"{key} {options[key]}"
        return ""

    @property
    def clob(self) -> Provider:
        return self.provider_for(CLOB, self.options["clob_url"])

    def poly_symbol(self, *parts: str) -> str:
        return ".".join(("pred", "poly", self.name, *parts))

    def symbols(self) -> list[str]:
        """Return the symbols of the last good run; before one, only volume and liquidity are known."""
        return list(self.known_symbols)

    def collect(self, deadline: float) -> list[Reading]:
        if not self.history_checked:
            self.history_checked = True
            self.final_state = self.recorded_final_state()
        if self.final_state:
            return []

        try:
            if self.options["event"]:
                readings, state = self.collect_event(deadline)
            else:
                readings, state = self.collect_market(deadline)
        except ProviderError as exc:
            return self.failed_from(exc)

        self.known_symbols = [reading.symbol for reading in readings]
        if state in FINAL_STATES:
            self.final_state = state
            log.info("polymarket market is %s; final prices recorded, polling stops collector=%s",
                     state, self.spec.key)
        return readings

    # -- one market ---------------------------------------------------------

    def collect_market(self, deadline: float) -> tuple[list[Reading], str]:
        raw = self.fetch_market(deadline)
        self.provider.succeeded()
        try:
            market = parse_market(raw)
        except ValueError as exc:
            raise ProviderError(TRANSIENT, f"{GAMMA}: unexpected market object: {exc}") from None

        tags = market_tags(market)
        names = unique_names([outcome.label for outcome in market.outcomes])
        readings = [probability_reading(self.poly_symbol(name), outcome, tags)
                    for name, outcome in zip(names, market.outcomes, strict=True)]
        readings.append(amount_reading(self.poly_symbol("volume"), market.volume, "volume", tags))
        readings.append(amount_reading(self.poly_symbol("liquidity"), market.liquidity, "liquidity", tags))
        if market.state == OPEN and self.options["clob"]:
            readings.append(self.midpoint_reading(self.poly_symbol("mid"), market, tags, deadline))
        return readings, market.state

    def fetch_market(self, deadline: float) -> dict:
        """Fetch the market object: a numeric id by /markets/<id>, anything else by /markets?slug=."""
        market_id = self.options["id"]
        if market_id is not None and market_id.isdigit():
            try:
                body = self.provider.get(f"/markets/{market_id}", deadline).json()
            except ProviderError as exc:
                raise _with_hint(exc, f"the market id {market_id}") from None
            if not isinstance(body, dict):
                raise ProviderError(TRANSIENT, f"{GAMMA}: expected a market object from /markets/{market_id}, "
                                               f"got {type(body).__name__}")
            return body
        # A slug sent to /markets/<id> gets 422, so a slug written as `id` is looked up as a slug.
        return self.find_by_slug("/markets", self.options["slug"] or market_id, "market", deadline)

    def find_by_slug(self, path: str, slug: str, kind: str, deadline: float) -> dict:
        """Return the element of a Gamma list endpoint whose slug matches; an unknown slug is an empty list."""
        try:
            body = self.provider.get(path, deadline, params={"slug": slug}).json()
        except ProviderError as exc:
            raise _with_hint(exc, f"the {kind} slug {slug}") from None
        if not isinstance(body, list):
            raise ProviderError(TRANSIENT, f"{GAMMA}: expected a list from {path}, got {type(body).__name__}")
        for item in body:
            if isinstance(item, dict) and item.get("slug") == slug:
                return item
        raise ProviderError(PERMANENT, f'{GAMMA}: no {kind} with slug "{slug}"; check the slug in the config')

    def midpoint_reading(self, symbol: str, market: Market, tags: dict, deadline: float) -> Reading:
        """The CLOB midpoint of the market's Yes token; a CLOB error fails this reading only."""
        outcome = market.yes()
        label = outcome.label if outcome else "Yes"
        tags = {**tags, "label": f"{label} midpoint", "unit": "probability", "source": CLOB}
        if outcome is None or not outcome.token_id:
            return Reading(symbol, None, False, "the Gamma response has no CLOB token id for this market", tags)
        if time.monotonic() >= deadline:
            # A request now would time out at once and put the CLOB into backoff for nothing.
            return Reading(symbol, None, False, "not requested: the run reached its timeout first", tags)
        try:
            value = fetch_midpoint(self.clob, outcome.token_id, deadline)
        except ProviderError as exc:
            # A 404 means "no order book", for an unknown token and a just-closed market alike,
            # so the market state always comes from Gamma, never from this error.
            if exc.kind == PERMANENT:
                self._clob_log.warning(self.spec.key, "polymarket CLOB rejected a midpoint request "
                                       "collector=%s token=%s error=%s", self.spec.key, outcome.token_id, exc.message)
            return Reading(symbol, None, False, exc.message, {**tags, "error_kind": exc.kind})
        self.clob.succeeded()
        return Reading(symbol, value, True, None, tags)

    # -- one event ----------------------------------------------------------

    def collect_event(self, deadline: float) -> tuple[list[Reading], str]:
        slug = self.options["event"]
        event = self.find_by_slug("/events", slug, "event", deadline)
        self.provider.succeeded()
        raw_markets = event.get("markets")
        if not isinstance(raw_markets, list):
            raise ProviderError(TRANSIENT, f'{GAMMA}: event "{slug}" has no markets list')

        labels = [_option_label(raw, position) for position, raw in enumerate(raw_markets, start=1)]
        names = unique_names(labels)
        parsed: list[Market | str] = []
        for raw in raw_markets:
            try:
                parsed.append(parse_market(raw))
            except ValueError as exc:
                parsed.append(str(exc))
        state = event_state(event, [m for m in parsed if isinstance(m, Market)])

        readings = []
        for name, label, market in zip(names, labels, parsed, strict=True):
            readings += self.option_readings(name, label, market, state, deadline)
        event_tags = {
            "market_state": state,
            "question": str(event.get("title") or ""),
            "end_date": _iso_text(event.get("endDate")),
            "event": slug,
        }
        # Event-level volume and liquidity are JSON numbers (market-level ones are strings).
        readings.append(amount_reading(self.poly_symbol("volume"), _first_number(event, "volume"), "volume",
                                       event_tags))
        readings.append(amount_reading(self.poly_symbol("liquidity"), _first_number(event, "liquidity"),
                                       "liquidity", event_tags))
        return readings, state

    def option_readings(self, name: str, label: str, market: Market | str, state: str,
                        deadline: float) -> list[Reading]:
        """The Yes probability of one event option, plus its CLOB midpoint while both are open."""
        symbol = self.poly_symbol(name)
        if isinstance(market, str):
            error = f"{GAMMA}: unexpected market object for option {label!r}: {market}"
            return [Reading(symbol, None, False, error, {"label": label, "event": self.options["event"]})]

        tags = {**market_tags(market), "event": self.options["event"]}
        outcome = market.yes()
        if outcome is None:
            readings = [Reading(symbol, None, False, f"option {label!r} has no outcomes", {**tags, "label": label})]
        else:
            readings = [probability_reading(symbol, outcome, tags, label)]
        if market.state == OPEN and state == OPEN and self.options["clob"]:
            readings.append(self.midpoint_reading(self.poly_symbol(name, "mid"), market, tags, deadline))
        return readings

    # -- closed markets -----------------------------------------------------

    def recorded_final_state(self) -> str | None:
        """Return closed or resolved when the stored history already holds this market's final prices.

        This keeps a restart or a config reload from polling a settled market again.
        """
        if self.reader is None:
            return None
        try:
            cursor = self.reader()
            cursor.execute("SELECT tags FROM metrics WHERE starts_with(symbol, ?) AND success "
                           "ORDER BY ts DESC LIMIT 1", [self.poly_symbol("")])
            row = cursor.fetchone()
        except (duckdb.Error, RuntimeError) as exc:
            log.warning("cannot read the stored state of a polymarket market collector=%s error=%s",
                        self.spec.key, exc)
            return None
        if row is None or row[0] is None:
            return None
        tags = json.loads(row[0]) if isinstance(row[0], str) else row[0]
        state = tags.get("market_state")
        return state if state in FINAL_STATES and self.is_same_market(tags) else None

    def is_same_market(self, tags: dict) -> bool:
        """Tell whether stored tags belong to the configured market, not an earlier one under this name."""
        options = self.options
        if options["event"]:
            return tags.get("event") == options["event"]
        if options["slug"]:
            return tags.get("slug") == options["slug"]
        return options["id"] in (tags.get("market_id"), tags.get("slug"))


def _option_label(raw, position: int) -> str:
    if isinstance(raw, dict):
        for key in ("groupItemTitle", "question", "slug"):
            if raw.get(key):
                return str(raw[key])
    return f"option {position}"


def _with_hint(error: ProviderError, what: str) -> ProviderError:
    """Add 'check <what> in the config' to a permanent error, which only a config change can fix."""
    if error.kind != PERMANENT:
        return error
    return ProviderError(PERMANENT, f"{error.message}; check {what} in the config")
