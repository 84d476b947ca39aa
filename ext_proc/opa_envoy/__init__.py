"""OPA-Envoy compatibility: policies written for opa-envoy-plugin run unchanged.

A policy declares ``input: opa-envoy`` (the sidecar's ``policy.input``, and the
bundle manifest's ``input`` field, which must agree). The sidecar then presents
OPA-Envoy's input document (``input``: built lazily, only the paths the compiled
policy reads) and honours OPA-Envoy's decision shapes (``decision``). The mapping,
side by side with OPA-Envoy's docs, is in docs/opa-envoy.md.
"""

from __future__ import annotations

from policies.bundle.format import DEFAULT_INPUT as A1_INPUT
from policies.bundle.format import INPUT_KINDS

#: The input kinds a policy can declare (one list, the bundle manifest's): A1's own
#: document, or OPA-Envoy's.
OPA_ENVOY_INPUT = "opa-envoy"
assert OPA_ENVOY_INPUT in INPUT_KINDS
#: OPA-Envoy's default decision path (its ``path`` option unset).
DEFAULT_PATH = "envoy/authz/allow"

__all__ = ["A1_INPUT", "DEFAULT_PATH", "INPUT_KINDS", "OPA_ENVOY_INPUT"]
