"""The self-signed certificate, its pin, and a real TLS server that pinned clients reach."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from asphalt import tls
from asphalt.errors import AsphaltError

NAMES = ["master.example", "10.213.0.1"]


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="hello over tls")


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[TestServer, str]]:
    """A real aiohttp server on 127.0.0.1 serving a fresh self-signed pair, and its pin."""
    cert, key = tls.self_signed(tmp_path / "data", names=NAMES)
    app = web.Application()
    app.router.add_get("/", _hello)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(ssl=tls.server_context(cert, key))
    yield server, tls.fingerprint(cert)
    await server.close()


def test_self_signed_writes_a_private_key_and_a_certificate(tmp_path: Path) -> None:
    cert, key = tls.self_signed(tmp_path / "data", names=NAMES)
    assert (cert, key) == (tmp_path / "data" / "tls.crt", tmp_path / "data" / "tls.key")
    assert key.stat().st_mode & 0o777 == 0o600
    assert cert.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["tls.crt", "tls.key"]


@pytest.mark.skipif(not shutil.which("openssl"), reason="needs the openssl command")
def test_the_certificate_is_ecdsa_p256_and_self_signed(tmp_path: Path) -> None:
    cert, _ = tls.self_signed(tmp_path, names=NAMES)
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-text", "-in", str(cert)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "id-ecPublicKey" in text and "prime256v1" in text
    verify = subprocess.run(
        ["openssl", "verify", "-x509_strict", "-CAfile", str(cert), str(cert)],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_an_existing_pair_is_reused_unchanged_even_for_other_names(tmp_path: Path) -> None:
    cert, key = tls.self_signed(tmp_path, names=NAMES)
    before = (cert.read_bytes(), key.read_bytes(), cert.stat().st_mtime_ns)
    again = tls.self_signed(tmp_path, names=["elsewhere.example"])
    assert again == (cert, key)
    assert (cert.read_bytes(), key.read_bytes(), cert.stat().st_mtime_ns) == before


def test_a_pair_missing_its_key_is_made_again(tmp_path: Path) -> None:
    cert, key = tls.self_signed(tmp_path, names=NAMES)
    first = tls.fingerprint(cert)
    key.unlink()
    tls.self_signed(tmp_path, names=NAMES)
    assert key.is_file() and tls.fingerprint(cert) != first


def test_the_fingerprint_is_the_sha256_of_the_der_in_lowercase_hex(tmp_path: Path) -> None:
    cert, _ = tls.self_signed(tmp_path, names=NAMES)
    fp = tls.fingerprint(cert)
    assert len(fp) == 64 and fp == fp.lower() and bytes.fromhex(fp)
    if shutil.which("openssl"):
        out = subprocess.run(
            ["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(cert)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        expected = out.strip().split("=", 1)[1].replace(":", "").lower()
    else:
        expected = hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert.read_text())).hexdigest()
    assert fp == expected


def test_a_missing_certificate_has_no_fingerprint(tmp_path: Path) -> None:
    with pytest.raises(AsphaltError, match="cannot read the TLS certificate"):
        tls.fingerprint(tmp_path / "nothing.crt")


async def test_a_client_pinned_to_the_fingerprint_reaches_the_server(
    tls_server: tuple[TestServer, str],
) -> None:
    server, fp = tls_server
    async with aiohttp.ClientSession() as session:
        pin = aiohttp.Fingerprint(bytes.fromhex(fp))
        async with session.get(server.make_url("/"), ssl=pin) as response:
            assert response.status == 200 and await response.text() == "hello over tls"


async def test_a_client_pinned_to_another_fingerprint_is_refused(
    tls_server: tuple[TestServer, str], tmp_path: Path
) -> None:
    server, fp = tls_server
    other, _ = tls.self_signed(tmp_path / "other", names=NAMES)
    assert tls.fingerprint(other) != fp
    async with aiohttp.ClientSession() as session:
        pin = aiohttp.Fingerprint(bytes.fromhex(tls.fingerprint(other)))
        with pytest.raises(aiohttp.ServerFingerprintMismatch):
            await session.get(server.make_url("/"), ssl=pin)


@pytest.mark.parametrize("name", ["master.example", "10.213.0.1", "localhost", "127.0.0.1", "::1"])
async def test_a_client_trusting_the_certificate_accepts_every_name_in_it(
    tls_server: tuple[TestServer, str], tmp_path: Path, name: str
) -> None:
    server, _ = tls_server
    trusting = ssl.create_default_context(cafile=tmp_path / "data" / "tls.crt")
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.make_url("/"), ssl=trusting, server_hostname=name) as response,
    ):
        assert response.status == 200


async def test_the_certificate_lasts_ten_years_and_names_every_address(
    tls_server: tuple[TestServer, str], tmp_path: Path
) -> None:
    server, _ = tls_server
    assert server.port is not None
    peer = await asyncio.to_thread(
        _verified_peer_cert, server.port, "localhost", tmp_path / "data" / "tls.crt"
    )
    years = (ssl.cert_time_to_seconds(str(peer["notAfter"])) - time.time()) / (365.25 * 86400)
    assert 9.9 < years < 10.1
    names = [v if k == "DNS" else str(ipaddress.ip_address(v)) for k, v in peer["subjectAltName"]]
    assert names == ["master.example", "localhost", "10.213.0.1", "127.0.0.1", "::1"]


def _verified_peer_cert(port: int, name: str, cafile: Path) -> dict[str, Any]:
    """The server's certificate as the stdlib decodes it after a fully verified handshake."""
    context = ssl.create_default_context(cafile=cafile)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname=name) as conn,
    ):
        peer = conn.getpeercert()
    assert peer is not None
    return dict(peer)


async def test_a_client_trusting_the_certificate_refuses_a_name_not_in_it(
    tls_server: tuple[TestServer, str], tmp_path: Path
) -> None:
    server, _ = tls_server
    trusting = ssl.create_default_context(cafile=tmp_path / "data" / "tls.crt")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.get(server.make_url("/"), ssl=trusting, server_hostname="other.example")


def test_the_server_context_needs_tls_12_or_newer(tmp_path: Path) -> None:
    context = tls.server_context(*tls.self_signed(tmp_path, names=NAMES))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_a_certificate_with_another_pairs_key_is_refused(tmp_path: Path) -> None:
    cert, _ = tls.self_signed(tmp_path / "a", names=NAMES)
    _, key = tls.self_signed(tmp_path / "b", names=NAMES)
    with pytest.raises(AsphaltError, match="the key does not belong to the certificate"):
        tls.server_context(cert, key)


def test_unreadable_tls_files_are_refused_with_their_names(tmp_path: Path) -> None:
    cert, key = tls.self_signed(tmp_path, names=NAMES)
    with pytest.raises(AsphaltError, match="cannot read the TLS certificate or key"):
        tls.server_context(cert, tmp_path / "missing.key")
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("not a certificate\n")
    with pytest.raises(
        AsphaltError, match=r"garbage\.crt and key .* cannot be used: they are not a PEM"
    ):
        tls.server_context(garbage, key)
