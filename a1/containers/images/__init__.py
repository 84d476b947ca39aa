"""Offline images for A1 (issue 10): a debootstrap base, the Envoy image and the python
images, built without any registry (``a1 images build``; docs/images.md).

One module per stage: ``rootfs`` (the base's root file system), ``wheels`` (the
host-built wheels and the Envoy binary), ``dockerfiles`` (the text of each build),
``build`` (the image graph, idempotence, progress) and ``sizes`` (the size table).
"""
