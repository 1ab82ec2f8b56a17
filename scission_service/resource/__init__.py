"""The Scission resource service: a FastAPI app run by a ServiceOwner on each device, edge or cloud node.

It serves a few models: describes itself, benchmarks them (async jobs) and runs contiguous block segments on
``.npy`` tensors, and only for calls forwarded by its FHS (invocation token on every request). Build it with
:func:`scission_service.resource.app.create_resource_app`; run it with ``scission resource serve``.
"""
