"""Deliberately broken variants of the stack, one per checker, for the self-test.

Each variant is data (``catalog.VARIANTS``) plus one wrapper module per broken
process; a wrapper patches exactly one product behaviour and runs the product's own
entry point with the process's own arguments (``wrapper.run``), so the product
never changes for a variant. ``store.store_fault`` is the fault the
``shared-cell-store`` variant needs (a cell's store locked).

Wrappers: ``fail_open_envoy`` and ``resend_nacked_xds`` (the control plane, ``a1
control serve``), ``sync_policy_fetch`` and ``inline_decision_log`` (the sidecar,
``python -m ext_proc``), ``shared_cell_store`` and ``foreign_tenant_cell`` (a cell,
``python -m a1.cell``).
"""

from conformance.variants.catalog import VARIANTS, Variant
from conformance.variants.store import store_fault

__all__ = ["VARIANTS", "Variant", "store_fault"]
