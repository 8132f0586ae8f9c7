"""The team's identity provider and built-in certificate authority (``chimera-identity``).

``bootstrap`` creates a CA folder, ``authority`` holds the rules (invites, tokens, signing),
``state`` its SQLite records, ``server`` the HTTPS front (step-ca's API subset), and ``cli`` the
command.
"""
