"""The Envoy YAML templates in ``envoy/`` and their structure-safe substitution.

Every template is a plain YAML file, parsed with ``yaml.safe_load`` *first*;
placeholders are then substituted in the parsed tree. A quoted scalar that is
exactly ``"${name}"`` becomes the value itself (an int, a list, a mapping, a
fragment); ``${name}`` inside a longer string is replaced by text through
``string.Template``. Because substitution happens after parsing, no value (a cell
name, a path with ``: `` or a newline in it, a JWKS) can change the document's
shape: there is no YAML or JSON injection, every template stays a valid YAML file
that an editor can check, and an unknown or missing placeholder is an error naming
the template file and the key path. Mapping keys are never substituted.

The templates are package data of ``control``: ``envoy/`` is not a Python package
(``envoy`` is the namespace of the Envoy wheel and of the xDS protobuf classes),
so the symlink ``control/envoy_templates -> ../envoy`` carries them, and a wheel
ships them as real files under ``control/envoy_templates/``.
"""

from __future__ import annotations

import copy
import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from policies.core.errors import UserError
from policies.core.package_data import packaged

_WHOLE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_ANY = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class TemplateError(UserError):
    """A template is missing, is not YAML, or names a placeholder with no value (exit 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code=2)


def template_dir() -> Path:
    """The directory holding ``bootstrap.yaml`` and ``fragments/``, symlinks resolved
    (package data of ``control``, through the ``envoy_templates`` link)."""
    return packaged("control", "envoy_templates")


#: Parsed templates by (path, mtime, size): parsing is ~90% of building the resources,
#: and the control plane rebuilds them on every spec change. ``substitute`` copies
#: every mapping and list, so a cached tree is never changed. Bounded in entries
#: (the template set is fixed and small; a stale entry is dropped when its file changes).
_PARSED: dict[Path, tuple[tuple[int, int], Any]] = {}
_MAX_PARSED = 64


def load_template(path: Path) -> Any:
    try:
        st = path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
        hit = _PARSED.get(path)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
        if len(_PARSED) >= _MAX_PARSED:
            _PARSED.clear()
        _PARSED[path] = (stamp, tree)
        return tree
    except FileNotFoundError:
        raise TemplateError(f"{path}: template not found") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise TemplateError(f"{where}: invalid YAML template: {err.problem}") from None


def substitute(node: Any, values: Mapping[str, Any], source: str, where: str = "") -> Any:
    """Return a copy of ``node`` with placeholders replaced (see the module doc)."""
    if isinstance(node, dict):
        return {k: substitute(v, values, source, f"{where}.{k}" if where else str(k))
                for k, v in node.items()}
    if isinstance(node, list):
        return [substitute(v, values, source, f"{where}[{i}]") for i, v in enumerate(node)]
    if not isinstance(node, str) or "${" not in node:
        return node
    whole = _WHOLE.match(node)
    if whole:
        name = whole.group(1)
        if name not in values:
            raise TemplateError(f"{source}: {where or '<root>'}: no value for ${{{name}}}")
        return copy.deepcopy(values[name])
    for name in _ANY.findall(node):
        if name not in values:
            raise TemplateError(f"{source}: {where}: no value for ${{{name}}}")
        if not isinstance(values[name], str | int) or isinstance(values[name], bool):
            raise TemplateError(f"{source}: {where}: ${{{name}}} inside text must be text")
    return string.Template(node).substitute({k: str(v) for k, v in values.items()
                                             if isinstance(v, str | int)})


def render_file(path: Path, values: Mapping[str, Any]) -> Any:
    return substitute(load_template(path), values, str(path))
