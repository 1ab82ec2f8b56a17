"""The dev IdP: a small OAuth2 client-credentials server for local use, the demo and tests (DESIGN §2)."""

from fhs.idp.app import IdPClient, IdPConfig, create_idp_app, load_idp_config

__all__ = ["IdPClient", "IdPConfig", "create_idp_app", "load_idp_config"]
