"""The team CRL, fetched from the CA at start and every ``lan.crl_refresh_s`` seconds.

The CRL is trusted only if it is signed by an issuer that leads to the profile's team roots: the
root itself, or an intermediate from our own certificate chain that the root signed. A fetch that
fails keeps the last good list (the CA may be briefly away); a CRL that does not verify, or is
older than the one we hold (a replay), is ignored. Runs on its own thread, never the Tk thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from chimera_tk.pki.certs import load_pem_chain

log = logging.getLogger(__name__)

FETCH_TIMEOUT = (5.0, 20.0)  # (connect, read) seconds
MAX_CRL_BYTES = 4 << 20


class CrlError(Exception):
    """The CRL could not be fetched, or did not verify."""


def crl_url(ca_url: str, identity_url: str) -> str:
    """Where the team CRL lives: the identity provider's ``/crl``, else the CA's.

    The built-in CA is its own identity provider (one address). A team whose CA is a real
    step-ca has the provider publish the CRL (step-ca 0.19 has none; see
    :mod:`chimera_tk.identity.step_ca`): it is signed by the same team intermediate, and every
    revocation made through Chimera lands there.
    """
    base = identity_url or ca_url
    return base.rstrip("/") + "/crl" if base else ""


def verify_crl(der: bytes, ca_bundle: Path, chain: Path) -> x509.CertificateRevocationList:
    """Parse ``der`` and check its signature against the team roots; raises CrlError."""
    try:
        crl = x509.load_der_x509_crl(der)
    except ValueError as exc:
        raise CrlError(f"not a DER CRL: {exc}") from None
    roots = load_pem_chain(ca_bundle.read_bytes())
    # Only intermediates of our own (already verified) chain may sign it, and only if a root
    # signed them: a CRL signed by anything else could hide a revocation.
    issuers = list(roots)
    for candidate in load_pem_chain(chain.read_bytes())[1:]:
        for root in roots:
            try:
                candidate.verify_directly_issued_by(root)
            except (ValueError, TypeError, InvalidSignature):
                continue
            issuers.append(candidate)
            break
    for issuer in issuers:
        if issuer.subject == crl.issuer and crl.is_signature_valid(issuer.public_key()):
            return crl
    raise CrlError(f"not signed by the team CA (issuer {crl.issuer.rfc4514_string()})")


class CrlWatcher:
    """Fetches, verifies and hands over the set of revoked serials (``on_revoked``)."""

    name = "lan-crl"

    def __init__(self, url: str, ca_bundle: Path, chain: Path, interval_s: float,
                 on_revoked: Callable[[frozenset[int]], None]) -> None:
        self.url = url
        self._ca_bundle = ca_bundle
        self._chain = chain
        self._interval_s = interval_s
        self._on_revoked = on_revoked
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name)
        self._session = requests.Session()
        self._session.trust_env = False  # REQUESTS_CA_BUNDLE etc. must not replace our roots
        self.current: x509.CertificateRevocationList | None = None

    def set_chain(self, chain: Path) -> None:
        """After a renewal: the intermediates come from the new chain file."""
        self._chain = chain

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def join(self, timeout: float) -> bool:
        if self._thread.ident is not None:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                self.refresh()
                self._stopping.wait(self._interval_s)
        finally:
            self._session.close()

    def refresh(self) -> bool:
        """One fetch; True if a new list was taken."""
        try:
            der = self._fetch()
        except CrlError as exc:
            kept = "keeping the last good one" if self.current is not None else "none held yet"
            log.warning("cannot fetch the team CRL from %s (%s): %s", self.url, kept, exc)
            return False
        try:
            crl = verify_crl(der, self._ca_bundle, self._chain)
        except (CrlError, OSError, ValueError) as exc:
            log.error("IGNORING the CRL from %s: it does not verify: %s", self.url, exc)
            return False
        if self.current is not None and crl.last_update_utc < self.current.last_update_utc:
            log.error("IGNORING the CRL from %s: older than the one held (a replay?)", self.url)
            return False
        next_update = crl.next_update_utc
        if next_update is not None and next_update < datetime.now(UTC):
            log.warning("the team CRL is past its next update (%s); using it anyway",
                        next_update)
        serials = frozenset(entry.serial_number for entry in crl)
        changed = self.current is None or serials != frozenset(e.serial_number
                                                               for e in self.current)
        self.current = crl
        if changed:
            log.info("team CRL loaded: %d revoked serial(s)%s", len(serials),
                     "".join(f" {s:x}" for s in sorted(serials)[:20]))
        self._on_revoked(serials)
        return True

    def _fetch(self) -> bytes:
        try:
            answer = self._session.get(self.url, verify=str(self._ca_bundle),
                                       timeout=FETCH_TIMEOUT, allow_redirects=False, stream=True)
            with answer:
                if answer.status_code != 200:
                    raise CrlError(f"HTTP {answer.status_code}")
                body = answer.raw.read(MAX_CRL_BYTES + 1, decode_content=True)
        except requests.RequestException as exc:
            raise CrlError(str(exc).splitlines()[0][:200] if str(exc) else
                           type(exc).__name__) from None
        if len(body) > MAX_CRL_BYTES:
            raise CrlError("the CRL is larger than 4 MiB")
        return body
