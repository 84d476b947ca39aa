"""The control-plane process: the spec watcher, the publisher, the status endpoint and
``ControlPlane``, which wires them to the xDS server, the pipeline and the rollout.

- ``watch``: ``SpecWatcher`` polls the spec directory and debounces bursts of edits;
- ``publisher``: ``Publisher`` applies a transition's phases, waiting for ACKs between;
- ``status``: ``StatusServer``, the HTTP status, metrics and rollout-action endpoint;
- ``serve``: ``ControlPlane``, everything together, and its lifecycle.
"""
