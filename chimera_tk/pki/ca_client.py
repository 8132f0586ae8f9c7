"""HTTP clients for the team CA (step-ca's API subset) and the identity provider's enrollment.

Trust: the first contact (:func:`fetch_pinned_root`) reads ``/roots`` without verification and
accepts only the root whose SHA-256 the invite names; every later call verifies the server against
that root alone, never the system's store. ``trust_env`` is off, so REQUESTS_CA_BUNDLE, proxies
and .netrc from the environment cannot change that. Every call has a timeout, follows no
redirects, reads at most 1 MiB, and turns network trouble into a UserError in plain words.
"""

from __future__ import annotations

import json
import socket
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import requests
from cryptography import x509
from urllib3.exceptions import InsecureRequestWarning

from chimera_tk.errors import UserError
from chimera_tk.pki.certs import fingerprint_sha256, load_pem_chain

DEFAULT_TIMEOUT = (5.0, 20.0)  # (connect, read) seconds
MAX_RESPONSE_BYTES = 1 << 20
IDENTITY_PROVIDER = "the identity provider"
CERTIFICATE_AUTHORITY = "the team CA"


class RequestRefused(UserError):
    """The server answered, and said no; ``reason`` is its message, cleaned up for display."""

    def __init__(self, service: str, url: str, status: int, reason: str) -> None:
        super().__init__(f"{service} at {url} refused the request ({status}): {reason}")
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SignedCertificate:
    """What /1.0/sign returned: the leaf first, then the intermediates up to (not incl.) a root."""

    chain: tuple[x509.Certificate, ...]

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]


def fetch_pinned_root(base_url: str, fingerprint: str, *,
                      timeout: tuple[float, float] = DEFAULT_TIMEOUT) -> x509.Certificate:
    """The team root from ``GET /roots``, accepted only if its SHA-256 equals ``fingerprint``.

    This one request is unverified on purpose: the pin, not the TLS handshake, is what makes the
    answer trustworthy. A mismatch means the server is not the team's, maybe a man in the middle.
    """
    with _JsonClient(IDENTITY_PROVIDER, base_url, verify=False, timeout=timeout) as client:
        answer = client.request("GET", "/roots")
    for cert in _certificates(answer.get("crts"), IDENTITY_PROVIDER, base_url):
        if fingerprint_sha256(cert) == fingerprint:
            return cert
    raise UserError(
        f"the server at {base_url} did not present the team root certificate named in the "
        "invite: this may be a man-in-the-middle attack, or the invite belongs to another "
        "server; nothing was saved")


class IdentityProviderClient:
    """The identity provider's enrollment endpoints (Chimera's own, not part of step-ca)."""

    def __init__(self, base_url: str, root_bundle: Path, *,
                 timeout: tuple[float, float] = DEFAULT_TIMEOUT,
                 client_identity: tuple[Path, Path] | None = None,
                 key_password: bytes | None = None) -> None:
        self._client = _JsonClient(IDENTITY_PROVIDER, base_url, verify=str(root_bundle),
                                   timeout=timeout, cert=client_identity,
                                   key_password=key_password)

    def report_certificate(self) -> None:
        """Tell the provider about the certificate presented over mutual TLS (one from the
        team's step-ca), so that its admin can list and revoke it by user id."""
        if self._client.request("POST", "/enroll/report", {}).get("status") != "ok":
            raise self._client.not_understood()

    def redeem_invite(self, secret: str, user_id: int) -> str:
        """Spend the invite's one-time secret for a one-time token (JWT) for /1.0/sign."""
        answer = self._client.request("POST", "/enroll/invite",
                                      {"secret": secret, "id": user_id})
        token = answer.get("ott")
        if not isinstance(token, str) or not token:
            raise self._client.not_understood()
        return token

    def start_telegram_code(self, *, user_id: int | None = None,
                            phone: str | None = None) -> None:
        """Ask the provider to send an enrollment code to a Telegram account (id or phone)."""
        self._client.request("POST", "/enroll/telegram/start", _id_or_phone(user_id, phone))

    def finish_telegram_code(self, code: str, *, user_id: int | None = None,
                             phone: str | None = None) -> str:
        """Trade the code received on Telegram for a one-time token for /1.0/sign."""
        answer = self._client.request("POST", "/enroll/telegram/finish",
                                      {**_id_or_phone(user_id, phone), "code": code})
        token = answer.get("ott")
        if not isinstance(token, str) or not token:
            raise self._client.not_understood()
        return token

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _id_or_phone(user_id: int | None, phone: str | None) -> dict[str, Any]:
    return {"id": user_id} if user_id is not None else {"phone": phone}


class StepCAClient:
    """The subset of step-ca's HTTP API that Chimera uses; a real step-ca answers the same.

    ``client_identity`` (certificate chain file, key file) is presented over mutual TLS, which
    /1.0/renew needs and /1.0/revoke accepts instead of a token.
    """

    def __init__(self, base_url: str, root_bundle: Path, *,
                 timeout: tuple[float, float] = DEFAULT_TIMEOUT,
                 client_identity: tuple[Path, Path] | None = None,
                 key_password: bytes | None = None) -> None:
        self._client = _JsonClient(CERTIFICATE_AUTHORITY, base_url, verify=str(root_bundle),
                                   timeout=timeout, cert=client_identity,
                                   key_password=key_password)

    def health(self) -> bool:
        return self._client.request("GET", "/health").get("status") == "ok"

    def roots(self) -> list[x509.Certificate]:
        answer = self._client.request("GET", "/roots")
        return _certificates(answer.get("crts"), CERTIFICATE_AUTHORITY, self._client.base_url)

    def sign(self, csr_pem: str, ott: str, *, not_after: str | None = None) -> SignedCertificate:
        """Have the CSR signed with a one-time token; ``not_after`` is e.g. ``"240h"``."""
        body: dict[str, Any] = {"csr": csr_pem, "ott": ott}
        if not_after is not None:
            body["notAfter"] = not_after
        answer = self._client.request("POST", "/1.0/sign", body)
        pems = answer.get("certChain") or [answer.get("crt"), answer.get("ca")]
        chain = _certificates(pems, CERTIFICATE_AUTHORITY, self._client.base_url)
        return SignedCertificate(chain=tuple(chain))

    def renew(self) -> SignedCertificate:
        """A new certificate for the client certificate presented over mutual TLS."""
        answer = self._client.request("POST", "/1.0/renew")
        pems = answer.get("certChain") or [answer.get("crt"), answer.get("ca")]
        chain = _certificates(pems, CERTIFICATE_AUTHORITY, self._client.base_url)
        return SignedCertificate(chain=tuple(chain))

    def revoke(self, serial: int, reason_code: int, note: str, *, ott: str | None = None) -> None:
        """Passive revocation of ``serial``: by mutual TLS with it, or by a one-time token."""
        body: dict[str, Any] = {"serial": str(serial), "passive": True,
                                "reasonCode": reason_code, "reason": note}
        if ott is not None:
            body["ott"] = ott
        if self._client.request("POST", "/1.0/revoke", body).get("status") != "ok":
            raise self._client.not_understood()

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _JsonClient:
    """One requests session speaking JSON to one base URL, with Chimera's error wording."""

    def __init__(self, service: str, base_url: str, *, verify: str | bool,
                 timeout: tuple[float, float],
                 cert: tuple[Path, Path] | None = None,
                 key_password: bytes | None = None) -> None:
        self.service = service
        self.base_url = base_url.rstrip("/")
        self._verify = verify
        self._timeout = timeout
        self._session = requests.Session()
        self._session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify= otherwise
        if cert is not None:
            self._session.cert = (str(cert[0]), str(cert[1]))
        if key_password is not None:
            self._session.mount("https://", _KeyPasswordAdapter(key_password))

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        url = self.base_url + path
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", InsecureRequestWarning)
                response = self._session.request(
                    method, url, json=body, verify=self._verify, timeout=self._timeout,
                    allow_redirects=False, stream=True, headers={"Accept": "application/json"})
            with response:
                raw = _read_limited(response)
        except requests.RequestException as exc:
            raise UserError(f"cannot reach {self.service} at {self.base_url}: "
                            f"{_plain_reason(exc, self._timeout)}") from None
        answer = _json_object(raw)
        if response.status_code not in (200, 201):
            message = answer.get("message") if isinstance(answer, dict) else None
            raise RequestRefused(self.service, self.base_url, response.status_code,
                                 _printable(message) or response.reason or "no reason given")
        if answer is None:
            raise self.not_understood()
        return answer

    def not_understood(self) -> UserError:
        return UserError(f"{self.service} at {self.base_url} sent an answer Chimera does not "
                         "understand; is this address really the team's identity provider?")

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _KeyPasswordAdapter(requests.adapters.HTTPAdapter):
    """Opens a passphrase-protected client key: requests has no option, urllib3 pools do."""

    def __init__(self, key_password: bytes) -> None:
        self._key_password = key_password
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["key_password"] = self._key_password
        super().init_poolmanager(*args, **kwargs)


def _read_limited(response: requests.Response) -> bytes:
    received = bytearray()
    for chunk in response.iter_content(64 * 1024):
        received += chunk
        if len(received) > MAX_RESPONSE_BYTES:
            raise requests.exceptions.ContentDecodingError("the answer is too large")
    return bytes(received)


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        answer = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return answer if isinstance(answer, dict) else None


def _certificates(pems: object, service: str, base_url: str) -> list[x509.Certificate]:
    if not isinstance(pems, list) or not pems or not all(isinstance(p, str) for p in pems):
        raise UserError(f"{service} at {base_url} sent no usable certificates")
    try:
        return [cert for pem in pems for cert in load_pem_chain(pem.encode("ascii"))]
    except (ValueError, UnicodeEncodeError):
        raise UserError(f"{service} at {base_url} sent a damaged certificate") from None


def _printable(message: object) -> str:
    """A server's message, safe to print on a terminal: one line, no control characters."""
    if not isinstance(message, str):
        return ""
    return "".join(ch if ch.isprintable() else " " for ch in message).strip()[:200]


def _plain_reason(exc: requests.RequestException, timeout: tuple[float, float]) -> str:
    if isinstance(exc, requests.exceptions.SSLError):
        return ("the secure connection failed (its certificate is not from the team's CA, "
                "or it does not speak TLS)")
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"no connection within {timeout[0]:g} s"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return f"no answer within {timeout[1]:g} s"
    if isinstance(exc, requests.exceptions.ContentDecodingError):
        return "its answer was too large or garbled"
    for cause in _causes(exc):
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "unknown host name"
        if isinstance(cause, TimeoutError):
            return "no answer in time"
        if isinstance(cause, ConnectionResetError):
            return "the connection was reset"
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
    return "the connection failed"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """Every exception that led to ``exc``, through requests' and urllib3's wrappers."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None),
                  *current.args]
        pending.extend(item for item in linked if isinstance(item, BaseException))
