"""Benchmarks that `a1 bench` runs: product code, so an installed wheel can run them.

- ``a1.bench.sidecar``: authorization paths through a real Envoy, side by side;
- ``a1.bench.policy``: compiled evaluation against regorus;
- ``a1.bench.cells``: cell selection against the seed's hash ring.
"""
