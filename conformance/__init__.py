"""The conformance suite: prove, with evidence, that the planes stay isolated under faults.

``conformance.harness`` is what it and the end-to-end tests (``e2e/``) share: an
HTTP client for the edge, waiting by polling, and a stack on free ports.
"""
