"""The shared core: what the data plane, the control plane and the tooling all read.

The cell model, the identifier grammars (tenant, cell), the error types and YAML
reading. It imports no plane (``ext_proc``, ``control``) and no tooling (``a1``),
so every one of them can import it; ``tests/test_layout.py`` enforces that.
"""
