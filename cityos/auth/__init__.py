"""Authentication: turning a request's credentials into a Principal.

- ``tokens``: OpenID Connect / OAuth 2.0 bearer tokens (JWT) from configured issuers.
- ``apikeys``: API keys for services and devices, kept only as hashes.

Access decisions themselves are domain rules and live in ``cityos.core.access``.
"""
