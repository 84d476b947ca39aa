"""object.union_n, object.subset and object.filter, as regorus does them.

(object.union, object.keys, object.remove and object.get are the C runtime's.)
Keys and values compare by Rego equality (``rego_sort_key``), never Python's,
for which ``1 == 1.0 == True``.
"""

from __future__ import annotations

from typing import Any

from policies.runtime.host.base import BuiltinError, builtin, type_name, want
from policies.runtime.values import RegoSet, rego_sort_key

__all__ = ["union"]


def _is_array(v: Any) -> bool:
    return type(v) is list or type(v) is tuple


def _is_set(v: Any) -> bool:
    return isinstance(v, (RegoSet, set, frozenset))


def union(a: Any, b: Any) -> Any:
    """``b`` merged over ``a``: objects key by key (recursively), anything else ``b``."""
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return b
    out = {rego_sort_key(k): (k, v) for k, v in a.items()}
    for k, v in b.items():
        key = rego_sort_key(k)
        out[key] = (k, union(out[key][1], v) if key in out else v)
    return dict(out.values())


@builtin("object.union_n")
def object_union_n(objects: Any) -> Any:
    want("object.union_n", 1, objects, "array")
    result: Any = {}
    for i, obj in enumerate(objects):
        if not isinstance(obj, dict):
            raise BuiltinError(f"object.union_n: item at index {i} is not an object")
        result = union(result, obj)
    return result


def _subset(sup: Any, sub: Any) -> bool:
    if isinstance(sup, dict) and isinstance(sub, dict):
        index = {rego_sort_key(k): v for k, v in sup.items()}
        for k, v in sub.items():
            key = rego_sort_key(k)
            if key not in index or not _subset(index[key], v):
                return False
        return True
    if _is_set(sup) and _is_set(sub):
        members = {rego_sort_key(x) for x in sup}
        return all(rego_sort_key(x) in members for x in sub)
    if _is_array(sup) and _is_array(sub):
        # sub must be a contiguous run of sup; the empty array is in every array (OPA;
        # regorus panics on it)
        return _contains_run([rego_sort_key(x) for x in sup], [rego_sort_key(x) for x in sub])
    if _is_array(sup) and _is_set(sub):
        return _subset(RegoSet(sup), sub)
    return rego_sort_key(sup) == rego_sort_key(sub)


def _contains_run(seq: list[Any], run: list[Any]) -> bool:
    """Whether ``run`` occurs contiguously in ``seq`` (Knuth-Morris-Pratt: linear time,
    where the naive scan lets two long arrays cost their product)."""
    if not run:
        return True
    fail = [0] * len(run)
    k = 0
    for i in range(1, len(run)):
        while k and run[i] != run[k]:
            k = fail[k - 1]
        if run[i] == run[k]:
            k += 1
        fail[i] = k
    k = 0
    for x in seq:
        while k and x != run[k]:
            k = fail[k - 1]
        if x == run[k]:
            k += 1
            if k == len(run):
                return True
    return False


@builtin("object.subset")
def object_subset(sup: Any, sub: Any) -> bool:
    """Whether ``sub`` is in ``sup``: objects recursively, sets as sets, arrays as a run."""
    return _subset(sup, sub)


@builtin("object.filter")
def object_filter(obj: Any, keys: Any) -> Any:
    """``obj`` with only the keys that are in ``keys`` (an array, set or object)."""
    want("object.filter", 1, obj, "object")
    if isinstance(keys, dict) or _is_array(keys) or _is_set(keys):
        wanted = {rego_sort_key(k) for k in keys}
    else:
        raise BuiltinError(
            f"object.filter: operand 2 must be array or set or object but got {type_name(keys)}"
        )
    return {k: v for k, v in obj.items() if rego_sort_key(k) in wanted}
