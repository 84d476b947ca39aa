"""The xDS server: snapshots per node group (``cache``), the SotW and Delta state
machines (``sotw``, ``delta``, sharing ``stream``), and the gRPC ADS server (``server``).
See docs/xds-protocol.md."""
