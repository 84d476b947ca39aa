"""Identity bounds every part agrees on: Envoy's jwt_authn, ``a1 token`` and the spec."""

from __future__ import annotations

#: The longest a token may live: jwt_authn's ``max_lifetime`` (Envoy refuses a token
#: whose exp is further ahead) and the bound on ``a1 token --ttl``.
MAX_TOKEN_LIFETIME_S = 86_400
