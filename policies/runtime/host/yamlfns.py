"""``yaml.marshal``, ``yaml.unmarshal`` and ``yaml.is_valid``, read as YAML 1.2's core schema.

regorus (serde_yaml) reads YAML 1.2: ``yes`` is a string. OPA (go-yaml v2 through
sigs.k8s.io/yaml) reads YAML 1.1: ``yes`` is ``true``, ``0777`` is 511, ``1_000`` is
1000, ``<<`` merges. A plain scalar the two read differently (YAML 1.1 booleans
beyond true/false, leading-zero, ``0o``, underscored and sexagesimal numbers,
timestamps, merge keys) is refused with an evaluation error, so A1 never answers
what one of them would not. So are what JSON cannot hold (non-string keys, ``.inf``,
``.nan``, integers past int64) and tags beyond the core ones (``!!binary``, ``!!set``,
local tags), which the two also read differently.

The parser is libyaml's, composing nodes only; A1 builds the value itself from the
nodes under a budget of ``MAX_NODES`` values, counted with every alias expanded, and
``MAX_DEPTH`` levels: a "billion laughs" document or a recursive alias is refused
after a bounded walk, never expanded. Text is at most ``MAX_TEXT`` characters.
``yaml.unmarshal`` reads one document (regorus refuses several; OPA keeps the first);
``yaml.is_valid`` accepts several, as OPA does.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from policies.runtime.host.base import BuiltinError, builtin, want
from policies.runtime.values import MAX_EXACT_INT, MIN_EXACT_INT, RegoSet, rego_sort_key

__all__ = ["MAX_DEPTH", "MAX_NODES", "MAX_TEXT", "parse_yaml"]

MAX_TEXT = 1 << 20
"""Longest YAML text read (characters)."""
MAX_NODES = 1 << 18
"""Most values one document may build, aliases expanded."""
MAX_DEPTH = 100
"""Deepest nesting of sequences and mappings."""

_PLAIN = "tag:a1:plain"  # an untagged plain scalar: resolved below
_T = "tag:yaml.org,2002:"

_NULL = re.compile(r"~|null|Null|NULL|")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT10 = re.compile(r"[-+]?[0-9]+")
_INT16 = re.compile(r"0x[0-9a-fA-F]+")
_INT2 = re.compile(r"0b[01]+")  # not core, but go-yaml v2 and serde_yaml both read it
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_SPECIAL_FLOAT = re.compile(r"[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)")
# plain scalars YAML 1.1 (OPA) and YAML 1.2 (regorus) read differently
_YAML11_BOOL = re.compile(r"y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF")
_YAML11_NUMBER = re.compile(
    r"[-+]?0[0-9_]+(?:\.[0-9_]*)?"  # 0777: octal in 1.1
    r"|[-+]?0o[0-7_]+"  # 1.2 octal: a string in 1.1
    r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?"  # sexagesimal
    r"|[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]*[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?"  # 1_000
    r"|[-+]?0[xXbBoO][0-9a-fA-F_]+"  # signed, upper-case or underscored radix forms
)
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt ].*)?")


class _Resolver(yaml.resolver.BaseResolver):
    """Tags an untagged plain scalar ``_PLAIN``, for the builder to resolve as YAML 1.2."""

    def resolve(self, kind: type, value: Any, implicit: Any) -> str:
        if kind is yaml.ScalarNode and implicit[0]:
            return _PLAIN
        return super().resolve(kind, value, implicit)  # type: ignore[no-any-return]


if getattr(yaml, "__with_libyaml__", False):
    from yaml.cyaml import CParser

    class _Composer(CParser, _Resolver):  # type: ignore[misc]
        """libyaml's parser and composer, with the resolver above."""

        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            _Resolver.__init__(self)

else:  # pragma: no cover - PyYAML built without libyaml: the same, in Python

    class _Composer(  # type: ignore[no-redef]
        yaml.reader.Reader,
        yaml.scanner.Scanner,
        yaml.parser.Parser,
        yaml.composer.Composer,
        _Resolver,
    ):
        def __init__(self, text: str) -> None:
            yaml.reader.Reader.__init__(self, text)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
            yaml.composer.Composer.__init__(self)
            _Resolver.__init__(self)


def _scalar(fn: str, node: ScalarNode) -> Any:
    text = node.value
    tag = node.tag
    if tag == _T + "str":
        return text
    if tag not in (_PLAIN, _T + "int", _T + "float", _T + "bool", _T + "null"):
        raise BuiltinError(f"{fn}: the tag {tag} is not supported")
    value = _core(fn, text)
    if tag != _PLAIN:
        kind = {int: "int", float: "float", bool: "bool", type(None): "null"}.get(type(value))
        if kind is None or (tag != _T + kind and not (tag == _T + "float" and kind == "int")):
            raise BuiltinError(f"{fn}: {text[:40]!r} is not a {tag.rsplit(':', 1)[-1]}")
        if tag == _T + "float":
            value = float(value)
    return value


def _core(fn: str, text: str) -> Any:
    """A plain scalar by YAML 1.2's core schema, refusing where YAML 1.1 differs."""
    if _NULL.fullmatch(text):
        return None
    if text in _BOOL:
        return _BOOL[text]
    if _INT10.fullmatch(text) and not re.fullmatch(r"[-+]?0[0-9]+", text):
        n = int(text)
    elif _INT16.fullmatch(text):
        n = int(text, 16)
    elif _INT2.fullmatch(text):
        n = int(text[2:], 2)
    elif _FLOAT.fullmatch(text) and not re.match(r"[-+]?0[0-9]", text):
        f = float(text)
        if not math.isfinite(f):
            raise BuiltinError(f"{fn}: the number {text[:40]} is out of range")
        return f
    elif (
        _YAML11_BOOL.fullmatch(text)
        or _YAML11_NUMBER.fullmatch(text)
        or _TIMESTAMP.fullmatch(text)
        or _SPECIAL_FLOAT.fullmatch(text)
    ):
        raise BuiltinError(
            f"{fn}: the plain scalar {text[:40]!r} is read differently by YAML 1.1 and 1.2:"
            " quote it"
        )
    else:
        return text
    if not MIN_EXACT_INT <= n <= MAX_EXACT_INT:
        raise BuiltinError(f"{fn}: the integer {text[:40]} is beyond int64")
    return n


def _build(fn: str, root: Node) -> Any:
    """The node tree as a Rego value, aliases expanded under the node budget, iteratively."""
    budget = MAX_NODES
    result: list[Any] = []
    # (node, container to fill, key in it, depth)
    todo: list[tuple[Node, Any, Any, int]] = [(root, result, None, 0)]
    while todo:
        node, into, key, depth = todo.pop()
        budget -= 1
        if budget < 0:
            raise BuiltinError(f"{fn}: more than {MAX_NODES} values (aliases expanded)")
        if depth > MAX_DEPTH:
            raise BuiltinError(f"{fn}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, ScalarNode):
            value: Any = _scalar(fn, node)
        elif isinstance(node, SequenceNode):
            if node.tag not in (_T + "seq",):
                raise BuiltinError(f"{fn}: the tag {node.tag} is not supported")
            value = [None] * len(node.value)
            for i, item in enumerate(node.value):
                todo.append((item, value, i, depth + 1))
        elif isinstance(node, MappingNode):
            if node.tag not in (_T + "map",):
                raise BuiltinError(f"{fn}: the tag {node.tag} is not supported")
            value = {}
            for k, v in node.value:
                if not isinstance(k, ScalarNode):
                    raise BuiltinError(f"{fn}: a non-string mapping key is not supported")
                name = _scalar(fn, k)
                if type(name) is not str:
                    raise BuiltinError(f"{fn}: a non-string mapping key is not supported")
                if name == "<<" and k.tag == _PLAIN:
                    raise BuiltinError(f"{fn}: merge keys (<<) are not supported")
                if name in value:
                    raise BuiltinError(f"{fn}: duplicate mapping key {name[:40]!r}")
                value[name] = None
                todo.append((v, value, name, depth + 1))
        else:  # pragma: no cover - libyaml composes only these
            raise BuiltinError(f"{fn}: unsupported YAML node")
        if key is None and into is result:
            result.append(value)
        else:
            into[key] = value
    return result[0]


def _documents(fn: str, text: str) -> list[Node]:
    if len(text) > MAX_TEXT:
        raise BuiltinError(f"{fn}: YAML text longer than {MAX_TEXT} characters")
    composer = _Composer(text)
    docs: list[Node] = []
    try:
        while composer.check_node():
            docs.append(composer.get_node())
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise BuiltinError(f"{fn}: invalid YAML: {first}") from None
    finally:
        composer.dispose()
    return docs


def parse_yaml(text: str, fn: str = "yaml.unmarshal") -> Any:
    """One YAML document as a Rego value (``null`` for an empty text)."""
    docs = _documents(fn, text)
    if len(docs) > 1:
        raise BuiltinError(f"{fn}: more than one YAML document")
    return _build(fn, docs[0]) if docs else None


@builtin("yaml.unmarshal")
def yaml_unmarshal(x: Any) -> Any:
    return parse_yaml(want("yaml.unmarshal", 1, x, "string"))


@builtin("yaml.is_valid")
def yaml_is_valid(x: Any) -> bool:
    """Whether every document of ``x`` parses (OPA: a non-string is not valid YAML)."""
    if type(x) is not str:
        return False
    if len(x) > MAX_TEXT:
        raise BuiltinError(f"yaml.is_valid: YAML text longer than {MAX_TEXT} characters")
    try:
        _documents("yaml.is_valid", x)
    except BuiltinError:
        return False
    return True


class _Dumper(yaml.SafeDumper):
    """Quotes every string that YAML 1.1 or 1.2 would read as something else."""


_NUMERIC_START = list("0123456789+-.")
for _tag, _pattern, _first in (
    ("int", _YAML11_NUMBER, _NUMERIC_START),
    ("int", _INT16, _NUMERIC_START),
    ("float", _FLOAT, _NUMERIC_START),
    ("float", _SPECIAL_FLOAT, _NUMERIC_START),
    ("timestamp", _TIMESTAMP, list("0123456789")),
    ("bool", _YAML11_BOOL, list("yYnNoO")),
    ("null", _NULL, ["~", "n", "N", ""]),
):
    _Dumper.add_implicit_resolver(_T + _tag, re.compile(f"^(?:{_pattern.pattern})$"), _first)


def _plain(fn: str, v: Any, depth: int = 0) -> Any:
    """The value as Python YAML can write: sets as sorted arrays, string keys only."""
    if depth > MAX_DEPTH:
        raise BuiltinError(f"{fn}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(v, RegoSet | set | frozenset):
        return [_plain(fn, x, depth + 1) for x in sorted(v, key=rego_sort_key)]
    if isinstance(v, list | tuple):
        return [_plain(fn, x, depth + 1) for x in v]
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            if type(k) is not str:
                raise BuiltinError(f"{fn}: a non-string object key cannot be marshalled")
            out[k] = _plain(fn, x, depth + 1)
        return out
    if isinstance(v, float) and not math.isfinite(v):
        raise BuiltinError(f"{fn}: {v} has no YAML form OPA reads")
    return v


@builtin("yaml.marshal")
def yaml_marshal(x: Any) -> str:
    """YAML text (block style, keys sorted) that both YAML 1.1 and 1.2 read back as ``x``;
    its spelling (quoting, indentation) may differ from OPA's go-yaml output."""
    fn = "yaml.marshal"
    text: str = yaml.dump(
        _plain(fn, x),
        Dumper=_Dumper,
        default_flow_style=False,
        sort_keys=True,
        allow_unicode=True,
        width=1 << 30,
    )
    if len(text) > 16 << 20:
        raise BuiltinError(f"{fn}: result larger than 16 MiB")
    return text
