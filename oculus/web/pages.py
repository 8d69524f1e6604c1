"""HTML pages: the dashboard and its live partial."""

from __future__ import annotations

import bottle

from oculus.web.dashboard import build_panels, format_value


def format_seconds(seconds: float | None) -> str:
    """Format a duration for reading: 45 s, 12 min, 3 h 5 min, 2 d 4 h."""
    if seconds is None:
        return "–"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        hours, minutes = divmod(seconds // 60, 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(seconds // 3600, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def install_pages(app: bottle.Bottle, runtime, render, query_endpoint) -> None:
    reader = runtime.database.reader

    def dashboard_values() -> dict:
        owners = runtime.scheduler.symbol_owners if runtime.scheduler is not None else {}
        panels = build_panels(reader(), runtime.config.collectors, owners)
        return {"panels": panels, "collector_count": len(runtime.config.collectors),
                "config_source": runtime.config.source}

    @app.get("/")
    def index():
        return render("dashboard", **dashboard_values())

    @app.get("/partials/metrics")
    def metrics_partial():
        bottle.response.set_header("Cache-Control", "no-store")
        return render("partials/metrics", **dashboard_values())


TEMPLATE_HELPERS = {"format_value": format_value, "format_seconds": format_seconds}
