"""Keys and CSRs for a user's LAN identity: P-256, private files, the id as CN and SAN."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chimera_tk.pki.keys import (
    build_csr,
    csr_to_pem,
    generate_private_key,
    load_private_key,
    same_public_key,
    write_private_key,
)
from chimera_tk.pki.userid import InvalidUserId, check_user_id, parse_user_id


def test_new_key_is_ecdsa_p256() -> None:
    key = generate_private_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)


def test_key_file_is_pkcs8_pem_readable_by_owner_only(tmp_path: Path) -> None:
    key = generate_private_key()
    path = tmp_path / "42.pem"
    write_private_key(path, key)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert load_private_key(path).private_numbers() == key.private_numbers()
    assert [p.name for p in tmp_path.iterdir()] == ["42.pem"]


def test_csr_names_the_id_as_common_name_and_dns_alt_name() -> None:
    key = generate_private_key()
    csr = x509.load_pem_x509_csr(csr_to_pem(build_csr(key, 123456789)).encode())
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "123456789"
    alt_names = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert alt_names.get_values_for_type(x509.DNSName) == ["123456789"]
    assert len(list(alt_names)) == 1
    assert csr.public_key() == key.public_key()


@pytest.mark.parametrize("bad", [0, -1, 2**63, True, "42", 4.0, None])
def test_csr_refuses_anything_but_a_user_id(bad: object) -> None:
    with pytest.raises(InvalidUserId):
        build_csr(generate_private_key(), bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["042", "+42", "-42", "4 2", "٤٢", "", "42\n", "0",
                                  "9223372036854775808", "1" * 10_000])
def test_user_id_text_must_be_canonical_decimal(text: str) -> None:
    with pytest.raises(InvalidUserId):
        parse_user_id(text)


def test_user_id_limits() -> None:
    assert parse_user_id("9223372036854775807") == 2**63 - 1
    assert check_user_id(1) == 1


def test_same_public_key_tells_keys_apart() -> None:
    key, other = generate_private_key(), generate_private_key()
    csr = build_csr(key, 7)
    # A CSR is not a certificate, so compare through a throw-away self-signed one.
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(csr.subject)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + timedelta(hours=1)).sign(key, hashes.SHA256()))
    assert same_public_key(key, cert)
    assert not same_public_key(other, cert)
