"""The Better-Auth JWKS server of the accounts tests, for ChatKit readers signed in elsewhere."""

from tests.accounts.conftest import jwks_server, jwks_server_instance, signing_keys

__all__ = ["jwks_server", "jwks_server_instance", "signing_keys"]
