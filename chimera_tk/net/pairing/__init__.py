"""Pairing without a CA: the exchange of certificates and confirmations (pure) and its worker."""
