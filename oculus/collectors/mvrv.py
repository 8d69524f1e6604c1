"""MVRV (market value to realized value) from the Coin Metrics community API.

Optionally also the BTC MVRV Z-score from BGeometrics (bitcoin-data.com). That
source has no published documentation and its response shape varies between
reports, so it is off by default and parsed leniently.
"""

from __future__ import annotations

from datetime import datetime

from oculus.collectors import coingecko
from oculus.collectors.base import Reading
from oculus.collectors.market import MarketCollector, base_url, market_fields
from oculus.collectors.provider import PERMANENT, TRANSIENT, ProviderError, number, utc_from_iso, utc_from_unix
from oculus.config.schema import Field, Invalid, boolean

METRIC = "CapMVRVCur"
ZSCORE_SYMBOL = "crypto.mvrv_z.btc"


def asset_list(value) -> list[str]:
    """Parse `assets`: Coin Metrics asset ids such as btc or [btc, eth]."""
    items = value if isinstance(value, list) else [value]
    result = [coingecko.ticker(item) for item in items]
    if not result:
        raise Invalid("expected at least one asset, such as [btc]")
    if len(set(result)) != len(result):
        raise Invalid("an asset is listed twice")
    return result


class MvrvCollector(MarketCollector):
    """Emits crypto.mvrv.<asset> and, with zscore: true, crypto.mvrv_z.btc."""

    TYPE = "mvrv"
    CATEGORY = "crypto"
    PROVIDER = "Coin Metrics"
    DEFAULT_INTERVAL = 21600.0  # polling faster spends the shared free-tier rate limit for nothing
    # Community rows are daily and lag about one day, so a value two days old is normal.
    FIELDS = (
        Field("assets", asset_list, ["btc"], "Coin Metrics asset ids, such as [btc, eth]."),
        Field("zscore", boolean, False,
              "Also record crypto.mvrv_z.btc from BGeometrics, an undocumented source of lower confidence."),
        Field("zscore_url", base_url, "https://bitcoin-data.com", "Base URL of the BGeometrics API."),
    ) + market_fields("Coin Metrics community", "https://community-api.coinmetrics.io", 3 * 86400.0)

    @classmethod
    def describe_target(cls, options: dict) -> str:
        target = f"Coin Metrics {METRIC}: {', '.join(options['assets'])}"
        return target + " + BGeometrics Z-score" if options["zscore"] else target

    def symbols(self) -> list[str]:
        names = [f"crypto.mvrv.{asset}" for asset in self.options["assets"]]
        return names + [ZSCORE_SYMBOL] if self.options["zscore"] else names

    def collect(self, deadline: float) -> list[Reading]:
        # One request per asset: Coin Metrics fails a whole request for one unsupported asset.
        readings = [self._mvrv_reading(asset, deadline) for asset in self.options["assets"]]
        if self.options["zscore"]:
            readings.append(self._zscore_reading(deadline))
        return readings

    # -- Coin Metrics --------------------------------------------------------

    def _mvrv_reading(self, asset: str, deadline: float) -> Reading:
        symbol = f"crypto.mvrv.{asset}"
        try:
            day, value = self._latest_mvrv(asset, deadline)
        except ProviderError as error:
            return self.failed_from(error, [symbol], source="coinmetrics")[0]
        if value is None:
            return Reading(symbol, None, False, f"Coin Metrics: no {METRIC} value for {asset} in the last 7 days",
                           {"error_kind": "missing", "source": "coinmetrics"})
        return Reading(symbol, value, True, None, {"unit": "ratio", "source": "coinmetrics", "metric": METRIC}, day)

    def _latest_mvrv(self, asset: str, deadline: float) -> tuple[datetime | None, float | None]:
        """Return (day, value) of the newest row that has a value; (None, None) when no row has one."""
        params = {"assets": asset, "metrics": METRIC, "frequency": "1d", "page_size": "7", "paging_from": "end"}
        # X-RateLimit-Reset is a delta in seconds on Coin Metrics (not an epoch).
        response = self.provider.get("/v4/timeseries/asset-metrics", deadline, params=params,
                                     rate_limit_header="X-RateLimit-Reset")
        rows = _coinmetrics_rows(response.json())
        self.provider.succeeded()

        # Rows are in ascending time order even with paging_from=end, so the newest is last.
        for row in reversed(rows):
            if not isinstance(row, dict) or row.get("asset") != asset:
                continue
            try:
                value = number(row.get(METRIC))
                day = utc_from_iso(str(row.get("time")))
            except ValueError as exc:
                raise ProviderError(TRANSIENT, f"Coin Metrics: invalid row {row!r}: {exc}") from None
            if value is not None:
                return day, value
        return None, None

    # -- BGeometrics -----------------------------------------------------------

    def _zscore_reading(self, deadline: float) -> Reading:
        provider = self.provider_for("BGeometrics", self.options["zscore_url"])
        try:
            body = provider.get("/v1/mvrv-zscore/last", deadline).json()
            value, day = parse_zscore(body)
        except ProviderError as error:
            return self.failed_from(error, [ZSCORE_SYMBOL], source="bgeometrics")[0]
        provider.succeeded()
        return Reading(ZSCORE_SYMBOL, value, True, None, {"unit": "z-score", "source": "bgeometrics"}, day)


def _coinmetrics_rows(body) -> list:
    """Return body["data"], or raise its error object, which Coin Metrics has been seen to send with HTTP 200."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        raise ProviderError(PERMANENT, f"Coin Metrics: {error.get('type')}: {error.get('message')}")
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise ProviderError(TRANSIENT, "Coin Metrics: the response has no data array")
    return body["data"]


def parse_zscore(body) -> tuple[float, datetime | None]:
    """Parse BGeometrics' /v1/mvrv-zscore/last into (z-score, day).

    Accepts the object {"d": "2026-03-17", "unixTs": 1773705600, "mvrvZscore": 0.9187},
    the same object inside a one-element list, and unixTs or mvrvZscore sent as
    strings. A missing or NaN z-score raises ProviderError.
    """
    if isinstance(body, list) and len(body) == 1:
        body = body[0]
    if not isinstance(body, dict):
        raise ProviderError(TRANSIENT, "BGeometrics: expected one object with mvrvZscore")

    try:
        value = number(body.get("mvrvZscore"))
    except ValueError as exc:
        raise ProviderError(TRANSIENT, f"BGeometrics: invalid mvrvZscore: {exc}") from None
    if value is None:
        raise ProviderError(TRANSIENT, f"BGeometrics: no mvrvZscore value (got {body.get('mvrvZscore')!r})")
    return value, _zscore_day(body)


def _zscore_day(body: dict) -> datetime | None:
    """The day of a z-score: unixTs (unix seconds, number or string), else the date string d."""
    try:
        seconds = number(body.get("unixTs"))
        if seconds is not None:
            return utc_from_unix(seconds)
        if isinstance(body.get("d"), str):
            return datetime.fromisoformat(body["d"][:10])
    except ValueError:
        pass
    return None
