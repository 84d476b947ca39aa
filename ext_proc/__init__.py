"""A1's data-plane sidecar: ext_authz (gRPC and HTTP) and ext_proc over one decision engine.

Public API: ``policies.core.cells.CellTable``, ``ext_proc.engine.Engine``/``Decision``,
``ext_proc.source.ConfigSource``/``FileConfigSource``, ``ext_proc.config.load_config``,
``ext_proc.app.main`` (``python -m ext_proc --config FILE.yaml``), and
``ext_proc.noop`` (the no-op ext_authz baseline for benchmarks).
"""
