"""Invite codes: everything a client needs in one line; anything damaged is one clear refusal."""

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chimera_tk.errors import UserError
from chimera_tk.pki.invite import (
    DAMAGED,
    PREFIX,
    Invite,
    encode_invite,
    new_invite_secret,
    parse_invite,
)

FINGERPRINT = "ab" * 32


def an_invite(**changes: object) -> Invite:
    values = {"url": "https://192.168.1.5:8443", "root_fingerprint": FINGERPRINT,
              "secret": new_invite_secret(), "user_id": 42, "name": "Alice"}
    values.update(changes)
    return Invite(**values)  # type: ignore[arg-type]


def code_of(payload: object) -> str:
    raw = json.dumps(payload).encode()
    return PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_encoded_invite_is_prefix_and_base64url_of_compact_json() -> None:
    invite = an_invite()
    code = encode_invite(invite)
    assert code.startswith("chimera-invite:")
    body = code.removeprefix("chimera-invite:")
    assert set(body) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    assert payload == {"v": 1, "url": invite.url, "fp": FINGERPRINT, "secret": invite.secret,
                       "id": 42, "name": "Alice"}
    assert len(base64.urlsafe_b64decode(invite.secret + "=")) == 32


@given(user_id=st.integers(1, 2**63 - 1), name=st.text(max_size=100).filter(str.isprintable),
       port=st.integers(1, 65535))
def test_every_invite_survives_a_round_trip(user_id: int, name: str, port: int) -> None:
    invite = an_invite(user_id=user_id, name=name, url=f"https://team.example:{port}")
    assert parse_invite(encode_invite(invite)) == invite


def test_whitespace_from_mail_and_chat_programs_is_ignored() -> None:
    invite = an_invite()
    code = encode_invite(invite)
    wrapped = "  " + "\n   ".join(code[i:i + 30] for i in range(0, len(code), 30)) + "\n"
    assert parse_invite(wrapped) == invite


def test_repr_never_shows_the_secret() -> None:
    invite = an_invite()
    assert invite.secret not in repr(invite)


def valid_payload(**changes: object) -> dict[str, object]:
    invite = an_invite()
    payload: dict[str, object] = {"v": 1, "url": invite.url, "fp": FINGERPRINT,
                                  "secret": invite.secret, "id": 42, "name": "Alice"}
    payload.update(changes)
    return payload


@pytest.mark.parametrize("code", [
    "",
    "chimera-invite:",
    "chimera-invite:!!!!",
    "hello",
    "chimera-invite:" + "A" * 5000,
    encode_invite(an_invite())[:-10],
    encode_invite(an_invite()).removeprefix("chimera-invite:"),
    code_of([1, 2]),
    code_of(valid_payload(v=2)),
    code_of(valid_payload(url="http://192.168.1.5:8443")),
    code_of(valid_payload(url="https://host:8443/path?x=1")),
    code_of(valid_payload(url=None)),
    code_of(valid_payload(fp="AB" * 32)),
    code_of(valid_payload(fp="ab" * 31)),
    code_of(valid_payload(secret="c2hvcnQ")),
    code_of(valid_payload(secret="'; rm -rf /")),
    code_of(valid_payload(id="42")),
    code_of(valid_payload(id=0)),
    code_of(valid_payload(id=True)),
    code_of(valid_payload(id=2**64)),
    code_of(valid_payload(name="\x1b[31mred")),
    code_of(valid_payload(name="x" * 101)),
    PREFIX + base64.urlsafe_b64encode(b"\xff\xfe not utf-8").decode(),
    PREFIX + base64.urlsafe_b64encode(b"[" * 2000).decode(),
])
def test_damaged_invites_are_one_clear_user_error(code: str) -> None:
    with pytest.raises(UserError) as raised:
        parse_invite(code)
    assert str(raised.value) == DAMAGED
