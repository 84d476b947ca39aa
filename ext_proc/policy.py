"""The seam to the policy runtime: load a compiled module and check it can serve."""

from __future__ import annotations

from typing import Any

from ext_proc.logutil import describe
from policies.core.errors import ConfigError
from policies.runtime import UNDEFINED, BundleError, PolicyError, PolicyModule

__all__ = ["UNDEFINED", "BundleError", "PolicyError", "PolicyModule", "load_policy"]


def load_policy(data: bytes, entrypoint: str, source: str) -> Any:
    """A ``PolicyModule`` with ``entrypoint`` that instantiates, else ConfigError naming ``source``.

    Creating one evaluator here means a module that loads but cannot run is
    refused at load time, while the last good module keeps serving.
    """
    try:
        module = PolicyModule.load(data, source=source)
    except BundleError as err:
        reason = str(err).removeprefix(f"{source}: ")  # the runtime names the source too
        raise ConfigError(f"{source}: policy.module: invalid policy module: {reason}") from None
    except Exception as err:  # a loader bug must still be a refusal, never a crash
        why = describe(err)
        raise ConfigError(f"{source}: policy.module: invalid policy module: {why}") from None
    if entrypoint not in module.meta.entrypoints:
        raise ConfigError(
            f"{source}: policy.entrypoint: the module has no entrypoint {entrypoint!r} "
            f"(it has {', '.join(module.meta.entrypoints) or 'none'})"
        )
    try:
        module.evaluator(entrypoint)
    except (BundleError, PolicyError) as err:
        raise ConfigError(f"{source}: policy.module: does not instantiate: {err}") from None
    except Exception as err:
        why = describe(err)
        raise ConfigError(f"{source}: policy.module: does not instantiate: {why}") from None
    return module
