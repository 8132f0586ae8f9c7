"""``chimera-identity serve``: the CA and identity provider over HTTPS (aiohttp, TLS 1.2+).

Routes (step-ca's subset, plus the invite endpoint of the identity provider)::

    GET  /health            200 {"status": "ok"}
    GET  /version           200 {"version": ..., "requireClientAuthentication": false}
    GET  /roots             200 {"crts": [root PEM]}           (step-ca answers 201)
    GET  /root/{sha256}     200 {"ca": root PEM}               (step ca bootstrap)
    POST /enroll/invite     200 {"ott": JWT}     body {"secret": str, "id": int}
    POST /enroll/telegram/start   200 {"status": "sent", "expiresIn": 300}
                                  body {"id": int} or {"phone": "+digits"}
    POST /enroll/telegram/finish  200 {"ott": JWT}  body {"id" | "phone", "code": "8 digits"}
    POST /enroll/report     200 {"status": "ok", "serial"}   mutual TLS with a certificate from
                            the team's step-ca: recorded for list and revoke --id
    POST /1.0/sign          201 {"crt", "ca", "certChain"}     body {"csr", "ott"[, "notAfter"]}
    POST /1.0/renew         201 {"crt", "ca", "certChain"}     mutual TLS, empty body
    POST /1.0/revoke        200 {"status": "ok"}   body {"serial", ["ott"], "reasonCode", "reason"}
    GET  /crl               200 the CRL, DER (``?pem`` for PEM)

The TLS layer asks every client for a certificate (optional) and checks its chain to the team
root, but not its dates, so that an expired one reaches :meth:`Authority.renew` and gets a
clear 401 instead of a failed handshake.

Every refusal is JSON ``{"status": N, "message": "..."}`` as step-ca writes it. Bodies are capped
at 64 KiB and checked for shape here; the rules live in :mod:`chimera_tk.identity.authority`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from chimera_tk import __version__
from chimera_tk.errors import UserError
from chimera_tk.identity.authority import ApiError, Authority
from chimera_tk.identity.layout import AuthorityFiles
from chimera_tk.identity.telegram_codes import (
    CODE_LIFETIME,
    CodeSenderFactory,
    TelegramCodes,
    not_set_up,
    telethon_sender_factory,
    valid_phone,
)
from chimera_tk.pki.certs import certificate_pem
from chimera_tk.pki.reasons import MAX_NOTE_LENGTH
from chimera_tk.pki.userid import InvalidUserId, check_user_id

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_SECRET_LENGTH = 100
MAX_CSR_LENGTH = 16 * 1024
MAX_TOKEN_LENGTH = 8 * 1024
MAX_SERIAL_DIGITS = 60  # serials are at most 20 bytes (RFC 5280): 49 decimal digits
# OpenSSL's X509_V_FLAG_NO_CHECK_TIME, which the ssl module accepts but does not name.
_NO_CHECK_TIME = 0x200000
AUTHORITY = web.AppKey("authority", Authority)
TELEGRAM_CODES = web.AppKey("telegram_codes", TelegramCodes)
MAX_CODE_LENGTH = 20
# Slow clients: aiohttp closes a connection that has not completed a request within the
# keep-alive timeout of connecting (or of its previous answer); a body that trickles in is cut
# off after BODY_TIMEOUT_S. Without them a slowloris client held its socket for 75 s, or forever.
# (A TLS handshake that never completes is dropped by asyncio after 60 s.)
KEEPALIVE_TIMEOUT_S = 15.0
BODY_TIMEOUT_S = 10.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_app(authority: Authority, code_sender: CodeSenderFactory | None = None, *,
              codes_clock: Callable[[], Any] | None = None) -> web.Application:
    """The provider's routes; ``code_sender`` opens the Telegram link for enrollment by code
    (None: those routes answer 404). ``codes_clock`` is for tests that expire codes."""
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_json_errors])
    app[AUTHORITY] = authority
    if code_sender is not None:
        async def telegram_link(app: web.Application) -> AsyncIterator[None]:
            # Telethon's client belongs to the server's event loop, so it is made here.
            async with code_sender() as sender:
                app[TELEGRAM_CODES] = TelegramCodes(authority, sender, clock=codes_clock)
                yield

        app.cleanup_ctx.append(telegram_link)
    app.add_routes([
        web.get("/health", _health),
        web.get("/version", _version),
        web.get("/roots", _roots),
        web.get("/root/{fingerprint}", _root_by_fingerprint),
        web.post("/enroll/invite", _enroll_invite),
        web.post("/enroll/telegram/start", _telegram_start),
        web.post("/enroll/telegram/finish", _telegram_finish),
        web.post("/enroll/report", _report),
        web.post("/1.0/sign", _sign),
        web.post("/1.0/renew", _renew),
        web.post("/1.0/revoke", _revoke),
        web.get("/crl", _crl),
    ])
    return app


def server_ssl_context(files: AuthorityFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(files.server_certificate, files.server_key)
    # Client certificates are optional (enrollment has none yet) and must chain to the team root.
    context.verify_mode = ssl.CERT_OPTIONAL
    context.load_verify_locations(files.root_certificate)
    context.verify_flags |= _NO_CHECK_TIME
    return context


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` into (host, port); UserError otherwise."""
    host, _, port_text = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UserError(f"--listen {text!r} must be HOST:PORT, for example 0.0.0.0:8443")
    return host, int(port_text)


def serve(authority: Authority, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM."""
    app = build_app(authority, telethon_sender_factory(authority.files))
    context = server_ssl_context(authority.files)
    print(f"chimera-identity: serving {authority.settings.url} on {host}:{port}", flush=True)
    web.run_app(app, host=host, port=port, ssl_context=context, print=None,
                handle_signals=True, shutdown_timeout=5, keepalive_timeout=KEEPALIVE_TIMEOUT_S)


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as refusal:
        # Clients get the same short message; the admin reads it here, next to the address.
        log.info("refused %s %s from %s: %s %s", request.method, request.path, request.remote,
                 refusal.status, refusal.message)
        return _error(refusal.status, refusal.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, exc.reason)
    except Exception:
        log.exception("unexpected error answering %s %s", request.method, request.path)
        return _error(500, "internal error; see the identity provider's log")


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _version(request: web.Request) -> web.Response:
    return web.json_response({"version": f"chimera-identity {__version__}",
                              "requireClientAuthentication": False})


async def _roots(request: web.Request) -> web.Response:
    return web.json_response({"crts": [certificate_pem(request.app[AUTHORITY].root)]})


async def _root_by_fingerprint(request: web.Request) -> web.Response:
    authority = request.app[AUTHORITY]
    if request.match_info["fingerprint"].lower() != authority.root_fingerprint:
        raise ApiError(404, "no root certificate with that fingerprint")
    return web.json_response({"ca": certificate_pem(authority.root)})


async def _enroll_invite(request: web.Request) -> web.Response:
    body = await _json_object(request)
    secret = _string(body, "secret", MAX_SECRET_LENGTH)
    try:
        user_id = check_user_id(body.get("id"))
    except InvalidUserId:
        raise ApiError(400, "id must be a user id: a whole number from 1 to 2**63-1") from None
    token = request.app[AUTHORITY].redeem_invite(secret, user_id)
    return web.json_response({"ott": token})


async def _telegram_start(request: web.Request) -> web.Response:
    codes = _telegram_codes(request)
    body = await _json_object(request)
    user_id, phone = _id_or_phone(body)
    # Behind a reverse proxy every client shares its address; serve directly for this limit.
    await codes.start(request.remote or "unknown", user_id=user_id, phone=phone)
    return web.json_response({"status": "sent",
                              "expiresIn": int(CODE_LIFETIME.total_seconds())})


async def _telegram_finish(request: web.Request) -> web.Response:
    codes = _telegram_codes(request)
    body = await _json_object(request)
    user_id, phone = _id_or_phone(body)
    code = _string(body, "code", MAX_CODE_LENGTH)
    if user_id is None:
        assert phone is not None
        user_id = await codes.resolve(phone)
    return web.json_response({"ott": codes.finish(user_id, code)})


def _telegram_codes(request: web.Request) -> TelegramCodes:
    codes = request.app.get(TELEGRAM_CODES)
    if codes is None:
        raise not_set_up()
    return codes


def _id_or_phone(body: dict[str, Any]) -> tuple[int | None, str | None]:
    """Exactly one of "id" (a user id) and "phone" ("+" and 6-15 digits)."""
    if ("id" in body) == ("phone" in body):
        raise ApiError(400, "give either id (a Telegram user id) or phone (+ and digits)")
    if "phone" in body:
        if not valid_phone(body["phone"]):
            raise ApiError(400, "phone must be + and 6 to 15 digits, e.g. +15550100")
        return None, body["phone"]
    try:
        return check_user_id(body["id"]), None
    except InvalidUserId:
        raise ApiError(400, "id must be a user id: a whole number from 1 to 2**63-1") from None


async def _sign(request: web.Request) -> web.Response:
    body = await _json_object(request)
    csr = _string(body, "csr", MAX_CSR_LENGTH)
    ott = _string(body, "ott", MAX_TOKEN_LENGTH)
    not_after = body.get("notAfter")
    if not_after is not None and (not isinstance(not_after, str) or len(not_after) > 64):
        raise ApiError(400, "notAfter must be a short string such as \"240h\"")
    if body.get("notBefore"):
        raise ApiError(400, "notBefore is not supported by this CA")
    issued = request.app[AUTHORITY].sign(csr, ott, not_after or None)
    leaf, intermediate = certificate_pem(issued.leaf), certificate_pem(issued.intermediate)
    return web.json_response({"crt": leaf, "ca": intermediate, "certChain": [leaf, intermediate]},
                             status=201)


async def _renew(request: web.Request) -> web.Response:
    await _read_body(request)  # step-ca sends an empty body; anything is ignored (and capped)
    presented = _peer_certificate(request)
    if presented is None:
        raise ApiError(400, "renewing needs the current certificate, presented over mutual TLS")
    issued = request.app[AUTHORITY].renew(presented)
    leaf, intermediate = certificate_pem(issued.leaf), certificate_pem(issued.intermediate)
    return web.json_response({"crt": leaf, "ca": intermediate, "certChain": [leaf, intermediate]},
                             status=201)


async def _revoke(request: web.Request) -> web.Response:
    body = await _json_object(request)
    serial_text = _string(body, "serial", MAX_SERIAL_DIGITS)
    if not serial_text.isascii() or not serial_text.isdigit() or int(serial_text) == 0:
        raise ApiError(400, "serial must be the certificate's serial number in decimal")
    ott = body.get("ott")
    if ott is not None:
        ott = _string(body, "ott", MAX_TOKEN_LENGTH)
    if body.get("passive", True) is not True:
        raise ApiError(400, "only passive revocation (a CRL entry) is supported")
    reason_code = body.get("reasonCode", 0)
    note = body.get("reason", "")
    if not isinstance(note, str) or len(note) > MAX_NOTE_LENGTH:
        raise ApiError(400, f"reason must be a string of at most {MAX_NOTE_LENGTH} characters")
    authority = request.app[AUTHORITY]
    pending = authority.prepare_revocation(
        int(serial_text), reason_code, note,
        presented=None if ott else _peer_certificate(request), ott=ott)
    # In step-ca mode this waits for step-ca: on a thread, so other clients are still served.
    await asyncio.to_thread(authority.forward_revocation, pending)
    authority.record_revocation(pending)
    return web.json_response({"status": "ok"})


async def _report(request: web.Request) -> web.Response:
    presented = _peer_certificate(request)
    if presented is None:
        raise ApiError(401, "reporting a certificate needs mutual TLS with it")
    record = request.app[AUTHORITY].note_certificate(presented)
    return web.json_response({"status": "ok", "serial": str(record.serial)})


async def _crl(request: web.Request) -> web.Response:
    crl = request.app[AUTHORITY].crl()
    if "pem" in request.query:
        return web.Response(body=crl.public_bytes(Encoding.PEM),
                            content_type="application/x-pem-file")
    return web.Response(body=crl.public_bytes(Encoding.DER), content_type="application/pkix-crl")


def _peer_certificate(request: web.Request) -> x509.Certificate | None:
    """The client's certificate from the TLS session, already chain-checked by the handshake."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        return None
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        raise ApiError(400, "the client certificate could not be read") from None


async def _json_object(request: web.Request) -> dict[str, Any]:
    raw = await _read_body(request)
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ApiError(400, "the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


async def _read_body(request: web.Request) -> bytes:
    """The whole body, at most MAX_BODY_BYTES (413 beyond) and within BODY_TIMEOUT_S (408)."""
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            return await request.read()
    except TimeoutError:
        raise ApiError(408, "the request body did not arrive in time") from None


def _string(body: dict[str, Any], name: str, max_length: int) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise ApiError(400, f"{name} must be a non-empty string")
    if len(value) > max_length:
        raise ApiError(400, f"{name} is too long")
    return value


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"status": status, "message": message}, status=status)
