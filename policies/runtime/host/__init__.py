"""Host builtins: Rego builtins the host implements in Python (see ``base``).

Importing the package imports every family module in it, so each registers its
builtins in ``REGISTRY`` without a list to keep in step here.
"""

from __future__ import annotations

import importlib
import pkgutil

from policies.runtime.host.base import REGISTRY, BuiltinError, EvalContext, HostBuiltin

__all__ = ["REGISTRY", "BuiltinError", "EvalContext", "HostBuiltin"]

for _info in pkgutil.iter_modules(__path__):
    if _info.name != "base":
        importlib.import_module(f"{__name__}.{_info.name}")
