"""A strict, bounded YAML reader that remembers where every value came from.

``yaml.safe_load`` would accept what a spec must refuse: duplicate keys (it
silently keeps the last), aliases (a "billion laughs" expands a few hundred
bytes into gigabytes), nesting deep enough to exhaust the stack, and tags that
turn text into bytes or dates. This reader composes the node graph (which gives
every node its line and column), refuses those while composing, and builds
plain JSON values (dict, list, str, int, float, bool, None) together with a map
from each value's path to its position, so that every later error, from the
schema or from a semantic check, can say ``file:line:col``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import yaml

from policies.core.errors import ConfigError

MAX_DEPTH = 64
"""Collections open at once."""

Path_ = tuple[str | int, ...]

_SCALAR_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}
_TIMESTAMP = "tag:yaml.org,2002:timestamp"  # an unquoted date is read as its text
_SEQ = "tag:yaml.org,2002:seq"
# The scalar constructors are pure functions of the node (they never touch the
# constructor's object cache), so one shared instance serves every parse.
_CONSTRUCTOR = yaml.constructor.SafeConstructor()
_CONSTRUCT = yaml.constructor.SafeConstructor.yaml_constructors
_MAP = "tag:yaml.org,2002:map"


@dataclass
class Positions:
    """Where each value (and each mapping key) starts: 1-based line and column."""

    values: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path_, tuple[int, int]] = field(default_factory=dict)

    def of(self, path: Path_) -> tuple[int, int]:
        """The position of the value at ``path``, or of its nearest ancestor that exists."""
        p = tuple(path)
        while p not in self.values and p:
            p = p[:-1]
        return self.values.get(p, (1, 1))

    def key(self, path: Path_) -> tuple[int, int]:
        """The position of the key that holds ``path`` (falls back to the value)."""
        return self.keys.get(tuple(path)) or self.of(path)


class _Refused(Exception):
    def __init__(self, mark: Any, message: str) -> None:
        super().__init__(message)
        self.mark = mark


class _Loader(yaml.SafeLoader):
    """SafeLoader whose composer refuses aliases, anchors and deep nesting *before*
    it recurses, so neither memory nor the stack is at the input's mercy."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(event.start_mark, "YAML aliases (*name) are not allowed in a spec")
        if getattr(event, "anchor", None) is not None:
            raise _Refused(event.start_mark, "YAML anchors (&name) are not allowed in a spec")
        collection = isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent)
        if collection:
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise _Refused(event.start_mark, f"nested deeper than {MAX_DEPTH} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            if collection:
                self._depth -= 1


def compose(text: str, source: str) -> yaml.Node | None:
    """The node graph of the single document in ``text`` (None if empty)."""
    loader = _Loader(text)
    try:
        return loader.get_single_node()
    except _Refused as err:
        raise ConfigError(f"{_where(source, err.mark)}: {err}") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        raise ConfigError(f"{_where(source, mark)}: invalid YAML: "
                          f"{err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: invalid YAML: {err}") from None
    finally:
        loader.dispose()


def parse(text: str, source: str) -> tuple[Any, Positions, yaml.Node | None]:
    """JSON values, their positions and the node graph of ``text``."""
    node = compose(text, source)
    positions = Positions()
    if node is None:
        return None, positions, None
    return _value(node, (), positions, source), positions, node


def _value(node: yaml.Node, path: Path_, pos: Positions, source: str) -> Any:
    # Iterative would be safer, but depth is already bounded by the composer.
    pos.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        if node.tag != _MAP:
            raise _bad(source, node, f"unsupported YAML tag {node.tag!r}")
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise _bad(source, key_node, "mapping keys must be plain strings")
            key = _scalar(key_node, source)
            if not isinstance(key, str):
                raise _bad(source, key_node, f"mapping key {key_node.value[:80]!r} is read as "
                           f"{type(key).__name__}; quote it to make it a string")
            if key in out:
                first = pos.keys[(*path, key)]
                raise _bad(source, key_node, f"duplicate key {key[:80]!r} "
                           f"(first at line {first[0]})")
            pos.keys[(*path, key)] = (key_node.start_mark.line + 1,
                                      key_node.start_mark.column + 1)
            out[key] = _value(value_node, (*path, key), pos, source)
        return out
    if isinstance(node, yaml.SequenceNode):
        if node.tag != _SEQ:
            raise _bad(source, node, f"unsupported YAML tag {node.tag!r}")
        return [_value(item, (*path, i), pos, source) for i, item in enumerate(node.value)]
    return _scalar(node, source)


def _scalar(node: yaml.Node, source: str) -> Any:
    if node.tag == _TIMESTAMP:
        return node.value
    if node.tag not in _SCALAR_TAGS:
        raise _bad(source, node, f"unsupported YAML tag {node.tag!r}")
    try:
        value = _CONSTRUCT[node.tag](_CONSTRUCTOR, node)
    except (ValueError, yaml.YAMLError):  # e.g. an int of 5,000 digits
        raise _bad(source, node, f"cannot read {node.value[:40]!r} "
                   f"({len(node.value)} characters) as {node.tag.rsplit(':', 1)[-1]}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise _bad(source, node, f"{node.value!r} is not a finite number")
    return value


def _where(source: str, mark: Any) -> str:
    return f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source


def _bad(source: str, node: yaml.Node, message: str) -> ConfigError:
    return ConfigError(f"{_where(source, node.start_mark)}: {message}")
