"""The user docs: the configuration reference and schema page match the code, and every link resolves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from oculus.collectors import registry
from oculus.config import schema
from oculus.config.reference import render_reference

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REFERENCE = DOCS / "configuration.md"
REGENERATE = "run: python -m oculus.config.reference > docs/configuration.md"
USER_DOCS = ("getting-started.md", "configuration.md", "collectors.md", "rules.md", "api.md", "schema.md",
             "deploy.md")


def declared_keys() -> dict[str, list[str]]:
    """Return, per heading of the reference, the keys declared for it."""
    keys = {f"## {section.name}": [field.name for field in section.fields] for section in schema.SECTIONS}
    keys["## collectors"] = [field.name for field in schema.COLLECTOR_COMMON]
    for type_name in registry.known_types():
        keys[f"### collectors: {type_name}"] = [field.name for field in registry.collector_class(type_name).FIELDS]
    keys["## rules"] = [field.name for field in schema.RULE_COMMON]
    keys["### rules: simple"] = [field.name for field in schema.SIMPLE_RULE_FIELDS]
    keys["### rules: SQL"] = [field.name for field in schema.SQL_RULE_FIELDS]
    keys["## channels"] = [field.name for field in schema.CHANNEL_COMMON]
    for type_name, fields in schema.CHANNEL_FIELDS.items():
        keys[f"### channels: {type_name}"] = [field.name for field in fields]
    return keys


def headed_parts(text: str) -> dict[str, str]:
    """Split a Markdown page at its ## and ### headings; return {heading line: text up to the next heading}."""
    parts = re.split(r"^(#{2,3} .+)$", text, flags=re.M)
    return {parts[index]: parts[index + 1] for index in range(1, len(parts) - 1, 2)}


def test_configuration_reference_documents_every_key():
    parts = headed_parts(REFERENCE.read_text(encoding="utf-8"))
    missing = [f"{heading} {key}" for heading, keys in declared_keys().items() for key in keys
               if heading not in parts or f"| `{key}` |" not in parts[heading]]
    assert missing == [], f"undocumented settings in docs/configuration.md: {missing}; {REGENERATE}"


def test_configuration_reference_up_to_date():
    assert REFERENCE.read_text(encoding="utf-8") == render_reference(), f"docs/configuration.md is stale; {REGENERATE}"


@pytest.mark.parametrize("name", USER_DOCS)
def test_readme_links_user_doc(name):
    assert f"(docs/{name})" in (ROOT / "README.md").read_text(encoding="utf-8"), f"README.md does not link {name}"


def markdown_links() -> list[tuple[Path, str]]:
    pages = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    return [(page, target) for page in pages
            for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8"))
            if not target.startswith(("http://", "https://", "mailto:"))]


def anchors(page: Path) -> set[str]:
    """Return the anchors GitHub makes for the headings of `page`."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_doc_links_resolve():
    broken = []
    for page, target in markdown_links():
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{page.name}: {target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{page.name}: {target} (no such heading)")
    assert broken == []


def test_schema_doc_lists_every_relation_and_column(db_path):
    from oculus.storage import Database

    database = Database(db_path)
    database.open()
    try:
        relations = database.reader().execute("""
            SELECT table_name, list(column_name ORDER BY ordinal_position)
            FROM information_schema.columns WHERE table_schema = 'main' GROUP BY table_name
        """).fetchall()
    finally:
        database.close()
    text = (DOCS / "schema.md").read_text(encoding="utf-8")
    parts = {heading: part for heading, part in headed_parts(text).items() if heading.startswith("### ")}

    missing = []
    for relation, columns in relations:
        part = next((part for heading, part in parts.items() if f"`{relation}`" in heading), None)
        if part is None:
            missing.append(f"{relation} (no ### heading)")
            continue
        missing += [f"{relation}.{column}" for column in columns if f"`{column}`" not in part]
    assert missing == [], f"docs/schema.md lacks: {missing}"
