"""The master's TLS material: its self-signed certificate, the certificate's pin and the contexts.

The only module that imports `cryptography`.

Workers and clients trust the master by pinning: the join token carries the SHA-256 fingerprint of
the certificate's DER (`fingerprint()`), and the caller hands it to aiohttp as
`ssl=aiohttp.Fingerprint(bytes.fromhex(fp))` (per request, or once on the `TCPConnector`). There is
deliberately no client context here: aiohttp takes either an `SSLContext` or a `Fingerprint`, not
both, and with a `Fingerprint` it uses its own context that skips the CA chain and host name and
then checks the pin after the handshake — exactly what a pin needs. A context that skips those
checks on its own would be an unpinned, unverified connection waiting to be misused. Note that
aiohttp checks a `Fingerprint` only on TLS connections: a pinned caller must insist on `https://`.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from asphalt.errors import AsphaltError

CERT_NAME = "tls.crt"
KEY_NAME = "tls.key"
VALID_FOR = datetime.timedelta(days=3650)
# Back-dated so a peer whose clock is a little behind still accepts a certificate made just now.
BACKDATE = datetime.timedelta(days=1)
ALWAYS_NAMES = ("localhost", "127.0.0.1", "::1")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def self_signed(data_dir: Path, *, names: Sequence[str]) -> tuple[Path, Path]:
    """Return `(cert, key)` in `data_dir`, making a self-signed pair the first time.

    An existing pair is reused unchanged, whatever `names` says now, so the fingerprint in join
    tokens already handed out stays valid across restarts.
    """
    cert_path, key_path = data_dir / CERT_NAME, data_dir / KEY_NAME
    if cert_path.is_file() and key_path.is_file():
        return cert_path, key_path
    data_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(key, [*names, *ALWAYS_NAMES])
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # The key goes first: a certificate on disk always has its key beside it.
    _write_atomically(key_path, key_pem, mode=0o600)
    _write_atomically(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return cert_path, key_path


def fingerprint(cert_path: Path) -> str:
    """The SHA-256 of the certificate's DER as 64 lowercase hex digits: the pin a token carries."""
    try:
        der = ssl.PEM_cert_to_DER_cert(cert_path.read_text())
    except (OSError, ValueError) as e:
        raise AsphaltError(f"cannot read the TLS certificate {cert_path}: {e}") from e
    return hashlib.sha256(der).hexdigest()


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A TLS 1.2+ server context for aiohttp serving `cert` with `key`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as e:
        why = "the key does not belong to the certificate"
        if e.reason != "KEY_VALUES_MISMATCH":
            why = f"they are not a PEM certificate and an unencrypted PEM key ({e.reason or e})"
        raise AsphaltError(
            f"the TLS certificate {cert} and key {key} cannot be used: {why}; give a PEM"
            " certificate and its own unencrypted PEM key"
        ) from e
    except OSError as e:
        raise AsphaltError(f"cannot read the TLS certificate or key: {e}") from e
    return context


def _certificate(key: ec.EllipticCurvePrivateKey, names: Sequence[str]) -> x509.Certificate:
    dns, ips = _split_names(names)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (dns or ["asphalt"])[0])])
    public = key.public_key()
    now = datetime.datetime.now(datetime.UTC)
    alternative: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
    alternative += [x509.IPAddress(ip) for ip in ips]
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
    )
    return builder.sign(key, hashes.SHA256())


def _split_names(names: Sequence[str]) -> tuple[list[str], list[IPAddress]]:
    """Host names and IP literals (`[::1]` too), each once, in the order given."""
    dns: list[str] = []
    ips: list[IPAddress] = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        try:
            ip = ipaddress.ip_address(name.removeprefix("[").removesuffix("]"))
        except ValueError:
            if name.lower() not in dns:
                dns.append(name.lower())
            continue
        if ip not in ips:
            ips.append(ip)
    return dns, ips


def _write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    """Write `data` to `path` so that a reader sees the old file or the whole new one."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as file:
            # mkstemp makes the file 0600, so a key is never readable by others, not even briefly.
            os.fchmod(file.fileno(), mode)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
