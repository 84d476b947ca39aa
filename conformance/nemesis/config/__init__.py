"""Config faults: bad input the platform must refuse while the old config keeps serving.

Each builder returns a ``ConfigFault`` whose readings say where the rejection
shows to an operator and how many NACKs it drew (the I-8 checker's inputs).
Stages, one module each: ``plane`` (where the planes are, from the launcher's
command lines; status, metrics, NACK counts), ``fault`` (``ConfigFault`` and the
spec-file edits repair undoes), ``spec`` (``invalid_spec``, ``envoy_nack``),
``bundles`` (``bundle_wrongly_signed``, ``bundle_from_impostor``, on the impostor
ADS server of ``rogue_xds``), ``policies`` (``policy_trap``).
"""

from __future__ import annotations

from conformance.nemesis.base import Target
from conformance.nemesis.config.bundles import bundle_from_impostor, bundle_wrongly_signed
from conformance.nemesis.config.fault import (
    RECOVER,
    SPEC_FILE,
    ConfigFault,
    SavedFiles,
    dump_spec,
    spec_document,
    write_file,
)
from conformance.nemesis.config.plane import (
    Plane,
    metric_sum,
    metric_values,
    no_candidate,
    plane,
    serves_spec,
    status,
)
from conformance.nemesis.config.policies import policy_trap, trap_policy
from conformance.nemesis.config.spec import BAD_LINES, envoy_nack, invalid_spec

__all__ = [
    "BAD_LINES", "RECOVER", "SPEC_FILE", "ConfigFault", "Plane", "SavedFiles",
    "bundle_from_impostor", "bundle_wrongly_signed", "config_faults", "dump_spec",
    "envoy_nack", "invalid_spec", "metric_sum", "metric_values", "no_candidate", "plane",
    "policy_trap", "serves_spec", "spec_document", "status", "trap_policy", "write_file",
]


def config_faults(target: Target) -> list[ConfigFault]:
    """Every config fault of I-8, in a safe order (each repaired before the next)."""
    return [invalid_spec(target, "syntax"), invalid_spec(target, "schema"),
            envoy_nack(target), bundle_wrongly_signed(target),
            bundle_from_impostor(target, "corrupted"), bundle_from_impostor(target, "unsigned"),
            policy_trap(target, "fuel"), policy_trap(target, "memory")]
