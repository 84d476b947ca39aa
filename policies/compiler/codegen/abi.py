"""What the generated code relies on in the runtime library (docs/policy-abi.md):
error codes, value tags, where constants go, and the runtime exports it imports."""

from __future__ import annotations

# Error codes the generated code raises (docs/policy-abi.md).
E_TYPE = 1
E_CONFLICT = 3
E_INTERNAL = 6
E_HOST = 7  # a host builtin refused its arguments (the host keeps the message)

CONST_BASE = 0x10_0000
TAG_ARRAY = 5
TAG_OBJECT = 7

# Runtime exports that are not builtins: name -> (params, results).
RUNTIME_SIGS: dict[str, tuple[str, str]] = {
    "a1_reset": ("i32", ""),
    "a1_alloc": ("i32", "i32"),
    "a1_fail": ("i32", ""),
    "a1_bool": ("i32", "i32"),
    "a1_num": ("f64", "i32"),
    "a1_int": ("i64", "i32"),
    "a1_arr_new": ("i32", "i32"),
    "a1_arr_push": ("i32 i32", "i32"),
    "a1_set_new": ("", "i32"),
    "a1_set_add": ("i32 i32", "i32"),
    "a1_obj_new": ("", "i32"),
    "a1_obj_put": ("i32 i32 i32", "i32"),
    "a1_truthy": ("i32", "i32"),
    "a1_tag": ("i32", "i32"),
    "a1_len": ("i32", "i32"),
    "a1_key_at": ("i32 i32", "i32"),
    "a1_val_at": ("i32 i32", "i32"),
    "a1_get": ("i32 i32", "i32"),
    "a1_eq": ("i32 i32", "i32"),
    "a1_cmp_op": ("i32 i32 i32", "i32"),
    "a1_in": ("i32 i32", "i32"),
    "a1_in2": ("i32 i32 i32", "i32"),
    "a1_add": ("i32 i32", "i32"),
    "a1_sub": ("i32 i32", "i32"),
    "a1_mul": ("i32 i32", "i32"),
    "a1_div": ("i32 i32", "i32"),
    "a1_rem": ("i32 i32", "i32"),
    "a1_or": ("i32 i32", "i32"),
    "a1_and": ("i32 i32", "i32"),
    "a1_dfa_match": ("i32 i32", "i32"),
    "a1_cidr_match": ("i32 i32", "i32"),
}
# The host import behind every host builtin: (builtin index, argument array) -> value,
# 0 for undefined, HOST_ERROR when the builtin failed.
HOST_CALL = "a1_host_call"
HOST_ERROR = -1
BINOPS = {
    "+": "a1_add",
    "-": "a1_sub",
    "*": "a1_mul",
    "/": "a1_div",
    "%": "a1_rem",
    "|": "a1_or",
    "&": "a1_and",
}
CMP_OPS = {"<": 0, "<=": 1, ">": 2, ">=": 3}


def wat_bytes(data: bytes) -> str:
    return "".join(
        chr(b) if 0x20 <= b < 0x7F and b not in (0x22, 0x5C) else f"\\{b:02x}" for b in data
    )
