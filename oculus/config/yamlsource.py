"""Load YAML while remembering the line of every key, so errors can point at it."""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

Path = tuple  # a key path such as ("collectors", 0, "interval")


@dataclass
class Located:
    """Parsed YAML data plus the 1-based line of each key path."""

    data: object
    lines: dict = field(default_factory=dict)
    duplicates: list = field(default_factory=list)

    def line_of(self, path: Path) -> int | None:
        """Return the line of `path`, or of its closest ancestor that has one."""
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]


class YamlSyntaxError(Exception):
    def __init__(self, line: int | None, message: str):
        super().__init__(message)
        self.line = line
        self.message = message


def load_located(text: str) -> Located:
    """Parse one YAML document with the safe loader and map key paths to lines."""
    loader = yaml.SafeLoader(text)
    located = Located(None)
    try:
        node = loader.get_single_node()
        if node is not None:
            # Before construction: PyYAML folds "<<" merge keys into the node while constructing.
            _record_lines(node, (), located)
            located.data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise YamlSyntaxError(line, _describe_yaml_error(exc)) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(None, str(exc).replace("\n", " ")) from None
    finally:
        loader.dispose()
    return located


def _describe_yaml_error(exc: yaml.MarkedYAMLError) -> str:
    parts = [p for p in (exc.context, exc.problem) if p]
    return "invalid YAML: " + ", ".join(parts)


def _record_lines(node, path: Path, located: Located, depth: int = 0) -> None:
    if depth > 100:  # aliases can nest deeply; lines below this depth fall back to an ancestor's
        return
    located.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key == "<<":
                continue
            child = path + (key,)
            if key in seen:
                located.duplicates.append((child, key_node.start_mark.line + 1))
            seen.add(key)
            located.lines[child] = key_node.start_mark.line + 1
            _record_lines(value_node, child, located, depth + 1)
            located.lines[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(item, path + (index,), located, depth + 1)
