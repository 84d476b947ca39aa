"""A1 in containers: offline images, a docker runtime for the stack, Compose output.

The shared names every part agrees on live in :mod:`a1.containers.names`.
"""
