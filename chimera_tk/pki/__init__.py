"""The client side of the team PKI: keys, CSRs, invites, the CA client, enrollment, identity files.

Other code reads a profile's identity with :func:`chimera_tk.pki.identity.load_identity`; the
``chimera --new`` flow lives in :mod:`chimera_tk.pki.commands`.
"""
