"""Identity: member JWT validation, the FHS's own signing keys, invocation tokens, the operator secret.

DESIGN §2. Plain Python: nothing here imports FastAPI.
"""
