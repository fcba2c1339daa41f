"""kdtool.bundle: the bundle format, which the exporter writes and the engines read.

Modules: ``manifest`` (checksummed file table, ``manifest.json``, path-based verification),
``manifest_schema`` (the manifest's required shape), ``verified`` (open a bundle so the bytes that were
verified are the bytes that are loaded; sign one), ``signing`` (EC keys, signature checks, versions), ``oms``
(OpenSSF Model Signing through its library) and
``precision`` (THE table of precisions a bundle can have).
"""
