"""The team's identity provider and built-in certificate authority (``chimera-identity``)."""
