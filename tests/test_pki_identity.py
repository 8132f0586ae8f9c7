"""Which id a certificate names, and finding a profile's identity among its files."""

import logging
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from chimera_tk.fsutil import atomic_write_bytes
from chimera_tk.pki.certs import certificate_pem
from chimera_tk.pki.identity import (
    CertificateIdentityError,
    Identity,
    certificate_user_id,
    load_identity,
)
from chimera_tk.pki.keys import generate_private_key, write_private_key
from chimera_tk.profiles import ProfilePaths

NOW = datetime.now(UTC).replace(microsecond=0)
ISSUER_KEY = ec.generate_private_key(ec.SECP256R1())
ISSUER = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Intermediate CA")])


def make_cert(common_names: list[str], alt_names: list[x509.GeneralName] | None = None, *,
              key: ec.EllipticCurvePrivateKey | None = None,
              not_after: datetime = NOW + timedelta(hours=240)) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn) for cn in common_names])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ISSUER)
               .public_key((key or ISSUER_KEY).public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(NOW - timedelta(minutes=1)).not_valid_after(not_after))
    if alt_names is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return builder.sign(ISSUER_KEY, hashes.SHA256())


def test_id_from_common_name_and_matching_dns_name() -> None:
    assert certificate_user_id(make_cert(["42"], [x509.DNSName("42")])) == 42


def test_a_certificate_without_alt_names_is_named_by_its_common_name() -> None:
    assert certificate_user_id(make_cert(["777000"])) == 777000


@pytest.mark.parametrize(("common_names", "alt_names"), [
    (["alice"], None),
    (["042"], None),
    (["٤٢"], None),
    (["-42"], None),
    (["42 "], None),
    ([], None),
    (["42", "43"], None),
    (["42"], [x509.DNSName("43")]),
    (["42"], [x509.DNSName("42"), x509.DNSName("evil.example")]),
    (["42"], [x509.DNSName("42"), x509.IPAddress(IPv4Address("10.0.0.1"))]),
    (["42"], [x509.RFC822Name("42@example.com")]),
    (["9223372036854775808"], None),
])
def test_certificates_not_naming_exactly_one_id_are_refused(
        common_names: list[str], alt_names: list[x509.GeneralName] | None) -> None:
    with pytest.raises(CertificateIdentityError) as raised:
        certificate_user_id(make_cert(common_names, alt_names))
    assert isinstance(raised.value, ValueError)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 2**63 - 1))
def test_every_id_written_by_the_ca_reads_back(user_id: int) -> None:
    cert = make_cert([str(user_id)], [x509.DNSName(str(user_id))])
    assert certificate_user_id(cert) == user_id


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=16))
def test_a_common_name_is_an_id_only_in_canonical_decimal(common_name: str) -> None:
    cert = make_cert([common_name])
    canonical = common_name.isascii() and common_name.isdigit() and \
        not common_name.startswith("0") and int(common_name) < 2**63
    if canonical:
        assert certificate_user_id(cert) == int(common_name)
    else:
        with pytest.raises(CertificateIdentityError):
            certificate_user_id(cert)


def install_identity(paths: ProfilePaths, user_id: int, *,
                     not_after: datetime = NOW + timedelta(hours=240),
                     key: ec.EllipticCurvePrivateKey | None = None) -> x509.Certificate:
    key = key or generate_private_key()
    cert = make_cert([str(user_id)], [x509.DNSName(str(user_id))], key=key, not_after=not_after)
    write_private_key(paths.private_key(user_id), key)
    atomic_write_bytes(paths.certificate(user_id), certificate_pem(cert).encode())
    atomic_write_bytes(paths.ca_bundle, b"root placeholder\n")
    return cert


def test_empty_profile_has_no_identity(paths: ProfilePaths) -> None:
    assert load_identity(paths) is None


def test_identity_describes_the_files_and_the_certificate(paths: ProfilePaths) -> None:
    cert = install_identity(paths, 42)
    identity = load_identity(paths)
    assert identity == Identity(
        user_id=42, key_path=paths.root / "42.pem", cert_path=paths.root / "42_crt.pem",
        ca_bundle_path=paths.root / "ca_bundle.pem", serial=cert.serial_number,
        not_before=NOW - timedelta(minutes=1), not_after=NOW + timedelta(hours=240),
        issuer="CN=Test Intermediate CA")
    assert identity.not_after.tzinfo is UTC
    assert "PRIVATE" not in repr(identity)


def test_without_the_team_roots_there_is_no_usable_identity(paths: ProfilePaths) -> None:
    install_identity(paths, 42)
    paths.ca_bundle.unlink()
    assert load_identity(paths) is None


def test_of_several_ids_the_one_expiring_last_wins(paths: ProfilePaths) -> None:
    install_identity(paths, 42, not_after=NOW + timedelta(hours=10))
    install_identity(paths, 43, not_after=NOW + timedelta(hours=200))
    install_identity(paths, 44, not_after=NOW + timedelta(hours=100))
    assert load_identity(paths).user_id == 43


def test_a_key_that_does_not_match_its_certificate_is_skipped(
        paths: ProfilePaths, caplog: pytest.LogCaptureFixture) -> None:
    install_identity(paths, 42, not_after=NOW + timedelta(hours=10))
    install_identity(paths, 43, not_after=NOW + timedelta(hours=200))
    write_private_key(paths.private_key(43), generate_private_key())  # crash between writes
    with caplog.at_level(logging.WARNING):
        assert load_identity(paths).user_id == 42
    assert "does not match" in caplog.text


def test_damaged_files_and_foreign_names_are_skipped(paths: ProfilePaths) -> None:
    install_identity(paths, 42)
    install_identity(paths, 43, not_after=NOW + timedelta(hours=260))
    paths.certificate(43).write_text("garbage")
    (paths.root / "ca_bundle.pem").touch()
    (paths.root / "notes.pem").write_text("not an identity")
    (paths.root / "044.pem").write_text("not canonical")
    key = generate_private_key()
    cert = make_cert(["99"], [x509.DNSName("99")], key=key)  # named 45 on disk, says 99 inside
    write_private_key(paths.private_key(45), key)
    atomic_write_bytes(paths.certificate(45), certificate_pem(cert).encode())
    assert load_identity(paths).user_id == 42


def test_renewal_is_due_when_a_third_of_the_life_is_left(paths: ProfilePaths) -> None:
    install_identity(paths, 42)
    identity = load_identity(paths)
    assert not identity.renewal_due(NOW)
    assert not identity.renewal_due(NOW + timedelta(hours=150))
    assert identity.renewal_due(NOW + timedelta(hours=161))
    assert identity.is_valid_at(NOW)
    assert not identity.is_valid_at(NOW + timedelta(hours=241))
