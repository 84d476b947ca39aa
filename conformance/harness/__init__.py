"""What the conformance suite and the e2e tests share to drive a real stack.

``client`` (HTTP requests to the edge), ``waiting`` (convergence by polling, never a
sleep), ``stacks`` (a stack on free loopback ports, tenants by cell, metrics).
"""
