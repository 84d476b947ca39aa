"""The control plane's pipeline: parse (``control.spec``) → IR (``state``) → generate (``render``).

- ``state``: ``PlatformState`` (the IR) and ``Assignment``; ``initial_state``, ``state_for_spec``;
- ``compile``: ``compile_bundle(policy, key)``, the signed bundle, memoised by content;
- ``render``: ``render(state) -> Snapshot``, with A1's consistency checks;
- ``topology``: ``transition(current, desired)``, the make-before-break phases.
docs/control-plane.md describes them.
"""

from control.pipeline.compile import compile_bundle, policy_digest
from control.pipeline.render import envoy_params, render
from control.pipeline.state import Assignment, PlatformState, initial_state, state_for_spec
from control.pipeline.topology import transition

__all__ = [
    "Assignment",
    "PlatformState",
    "compile_bundle",
    "envoy_params",
    "initial_state",
    "policy_digest",
    "render",
    "state_for_spec",
    "transition",
]
