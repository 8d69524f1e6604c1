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
            _check_expanded_size(node)
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


# A few nested aliases can expand a small file into billions of values ("billion laughs").
MAX_EXPANDED_NODES = 100_000


def _check_expanded_size(root) -> None:
    """Raise YamlSyntaxError when aliases expand the document past MAX_EXPANDED_NODES values."""
    sizes: dict = {}
    stack = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if not children_done:
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
            continue
        sizes[id(node)] = 1 + sum(sizes.get(id(child), 1) for child in children)
        if sizes[id(node)] > MAX_EXPANDED_NODES:
            raise YamlSyntaxError(node.start_mark.line + 1,
                                  f"the document expands to more than {MAX_EXPANDED_NODES:,} values through "
                                  "aliases (*name); write the repeated parts out or use fewer nested aliases")


def _children(node) -> list:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _describe_yaml_error(exc: yaml.MarkedYAMLError) -> str:
    parts = [p for p in (exc.context, exc.problem) if p]
    return "invalid YAML: " + ", ".join(parts)


def _record_lines(node, path: Path, located: Located, depth: int = 0, seen: set | None = None) -> None:
    if depth > 100:  # aliases can nest deeply; lines below this depth fall back to an ancestor's
        return
    seen = set() if seen is None else seen
    located.lines.setdefault(path, node.start_mark.line + 1)
    if id(node) in seen:  # an alias: its own lines were recorded where it was defined
        return
    seen.add(id(node))
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
            _record_lines(value_node, child, located, depth + 1, seen)
            located.lines[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(item, path + (index,), located, depth + 1, seen)
