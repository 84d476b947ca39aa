"""The in-process policy runtime: load a compiled module, evaluate inputs (docs/policy-abi.md)."""

from policies.runtime.module import (
    ABI_VERSION,
    BundleError,
    Evaluator,
    Metadata,
    PolicyError,
    PolicyModule,
)
from policies.runtime.values import UNDEFINED, RegoSet

__all__ = [
    "ABI_VERSION",
    "UNDEFINED",
    "BundleError",
    "Evaluator",
    "Metadata",
    "PolicyError",
    "PolicyModule",
    "RegoSet",
]
