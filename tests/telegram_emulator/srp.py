"""The server half of Telegram's SRP-2048 2FA check (https://core.telegram.org/api/srp).

The server keeps only the verifier ``v = g^x mod p`` (x derived from the password and two salts),
never the password. ``account.getPassword`` hands out a fresh ``B = k*v + g^b``; the client answers
``auth.checkPassword`` with ``A`` and the proof ``M1`` that Telethon's ``compute_check`` builds, and
the server recomputes ``M1`` from its side of the exchange. A wrong password gives a different
shared secret and so a different proof.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass

from telethon import password as tp
from telethon.tl import types

# Telegram's published 2048-bit safe prime (Telethon accepts it without factorizing) and g = 3.
PRIME = int.from_bytes(bytes.fromhex(
    "C71CAEB9C6B1C9048E6C522F70F13F73980D40238E3E21C14934D037563D930F"
    "48198A0AA7C14058229493D22530F4DBFA336F6E0AC925139543AED44CCE7C37"
    "20FD51F69458705AC68CD4FE6B6B13ABDC9746512969328454F18FAF8C595F64"
    "2477FE96BB2A941D5BCD1D4AC8CC49880708FA9B378E3C4F3A9060BEE67CF9A4"
    "A4A695811051907E162753B56B0F6B410DBA74D8A84B2A14B3144E0EF1284754"
    "FD17ED950D5965B4B9DD46582DB1178D169C6BC465B0D6FF9CA3928FEF5B9AE4"
    "E418FC15E83EBEA0F87FA9FF5EED70050DED2849F47BF959D956850CE929851F"
    "0D8115F635B105EE2E4E15D04B2454BF6F4FADF034B10403119CD8E3B92FCC5B"), "big")
G = 3
_P_BYTES = PRIME.to_bytes(256, "big")


@dataclass
class PasswordVerifier:
    """What the server stores for an account's 2FA password."""

    salt1: bytes
    salt2: bytes
    verifier: int
    hint: str

    @classmethod
    def create(cls, password: str, hint: str = "") -> PasswordVerifier:
        salt1, salt2 = os.urandom(40), os.urandom(16)
        x = int.from_bytes(tp.compute_hash(new_algo(salt1, salt2), password), "big")
        return cls(salt1, salt2, pow(G, x, PRIME), hint)

    def algo(self) -> types.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow:
        return new_algo(self.salt1, self.salt2)


@dataclass
class Challenge:
    """One ``account.getPassword`` answer's secret half, valid for one check."""

    srp_id: int
    b: int
    B: int

    @classmethod
    def create(cls, verifier: PasswordVerifier) -> Challenge:
        k = _k()
        while True:
            b = int.from_bytes(os.urandom(256), "big")
            g_b = pow(G, b, PRIME)
            # The client rejects a g^b that is too small or too close to p (is_good_mod_exp_first).
            if tp.is_good_mod_exp_first(g_b, PRIME):
                B = (k * verifier.verifier + g_b) % PRIME
                if tp.is_good_large(B, PRIME):
                    return cls(int.from_bytes(os.urandom(8), "big", signed=True), b, B)

    def b_bytes(self) -> bytes:
        return self.B.to_bytes(256, "big")

    def accepts(self, verifier: PasswordVerifier, a_bytes: bytes, m1: bytes) -> bool:
        A = int.from_bytes(a_bytes, "big")
        if not tp.is_good_mod_exp_first(A, PRIME):
            return False
        a_for_hash = tp.big_num_for_hash(A)
        b_for_hash = tp.num_bytes_for_hash(self.b_bytes())
        u = int.from_bytes(tp.sha256(a_for_hash, b_for_hash), "big")
        # S = (A * v^u)^b: the same secret as the client's (g^b)^(a + u*x) iff x matches.
        s = pow(A * pow(verifier.verifier, u, PRIME) % PRIME, self.b, PRIME)
        k_hash = tp.sha256(tp.big_num_for_hash(s))
        p_for_hash = tp.num_bytes_for_hash(_P_BYTES)
        g_for_hash = tp.big_num_for_hash(G)
        expected = tp.sha256(
            tp.xor(tp.sha256(p_for_hash), tp.sha256(g_for_hash)),
            tp.sha256(verifier.salt1), tp.sha256(verifier.salt2),
            a_for_hash, b_for_hash, k_hash)
        return hmac.compare_digest(expected, m1)


def new_algo(salt1: bytes, salt2: bytes
          ) -> types.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow:
    return types.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow(
        salt1=salt1, salt2=salt2, g=G, p=_P_BYTES)


def _k() -> int:
    return int.from_bytes(tp.sha256(tp.num_bytes_for_hash(_P_BYTES), tp.big_num_for_hash(G)),
                          "big")
