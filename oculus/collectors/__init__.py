"""Collectors: one module per type, each turning one target into samples."""
