"""Web layer: the Bottle app (dashboard, API, health) served by waitress."""
