"""TLS end to end: the emulator serves it, the client trusts a private CA, and every
mismatch (an untrusted certificate, plain text against TLS and the reverse) is a clear SDK
error within the call's timeout, never a hang."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import sdm_async
from sdm_async import errors
from sdm_async.testing import Emulator
from sdm_async.testing.auth import new_key_pair
from sdm_async.testing.tls import make_certificate
from tests import processes

KEY, SECRET = new_key_pair()
FAST = sdm_async.RetryPolicy(base_delay=0.05, max_delay=0.1)


def _user() -> sdm_async.User:
    return sdm_async.User(email="tls@example.com", first_name="T", last_name="L")


async def test_the_emulator_serves_tls_and_its_client_trusts_it() -> None:
    async with Emulator(tls=True) as emu:
        assert emu.root_certificates is not None
        assert emu.root_certificates.startswith(b"-----BEGIN CERTIFICATE-----")
        async with emu.client() as client:
            assert client.insecure is False
            made = (await client.accounts.create(_user())).account
            assert (await client.accounts.get(made.id)).account.email == "tls@example.com"
        # A client of its own, given the PEM as a user would be.
        own = sdm_async.Client(
            emu.access_key, emu.secret_key, emu.address, root_certificates=emu.root_certificates
        )
        async with own:
            assert [u.id async for u in own.accounts.list("")] == [made.id]


@pytest.mark.parametrize("trusted", ["system roots", "another CA"])
async def test_an_untrusted_certificate_is_a_clear_error_at_once(trusted: str) -> None:
    roots = None if trusted == "system roots" else make_certificate().cert_pem
    attempts: list[sdm_async.Attempt] = []
    async with Emulator(tls=True) as emu:
        client = sdm_async.Client(
            emu.access_key,
            emu.secret_key,
            emu.address,
            root_certificates=roots,
            on_attempt=attempts.append,
        )
        async with client:
            started = time.monotonic()
            with pytest.raises(errors.UnavailableError) as raised:
                await client.accounts.get("a-1", timeout=10)
            assert time.monotonic() - started < 2
    message = str(raised.value)
    assert "certificate is not trusted" in message and "root_certificates=" in message
    assert len(attempts) == 1  # a certificate does not become trusted by asking again


async def test_plain_text_against_tls_fails_within_the_timeout() -> None:
    async with Emulator(tls=True) as emu:
        client = sdm_async.Client(emu.access_key, emu.secret_key, emu.address, True, retry=FAST)
        async with client:
            started = time.monotonic()
            with pytest.raises((errors.UnavailableError, errors.TimeoutError)):
                await client.accounts.get("a-1", timeout=2)
            assert time.monotonic() - started < 3


async def test_tls_against_plain_text_fails_within_the_timeout() -> None:
    pem = make_certificate().cert_pem
    async with Emulator() as emu:
        assert emu.root_certificates is None
        client = sdm_async.Client(
            emu.access_key, emu.secret_key, emu.address, root_certificates=pem, retry=FAST
        )
        async with client:
            started = time.monotonic()
            with pytest.raises((errors.UnavailableError, errors.TimeoutError)):
                await client.accounts.get("a-1", timeout=2)
            assert time.monotonic() - started < 3


def test_bad_root_certificates_are_refused_before_any_call() -> None:
    with pytest.raises(TypeError, match="PEM bytes"):
        sdm_async.Client(KEY, SECRET, root_certificates="-----BEGIN CERTIFICATE-----")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no PEM certificate"):
        sdm_async.Client(KEY, SECRET, root_certificates=b"not a certificate")
    pem = make_certificate().cert_pem
    with pytest.raises(ValueError, match="insecure=True"):
        sdm_async.Client(KEY, SECRET, "localhost:1", True, root_certificates=pem)


async def test_from_env_reads_the_ca_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with Emulator(tls=True) as emu:
        assert emu.root_certificates is not None
        ca = tmp_path / "ca.pem"
        ca.write_bytes(emu.root_certificates)
        monkeypatch.setenv("SDM_API_ACCESS_KEY", emu.access_key)
        monkeypatch.setenv("SDM_API_SECRET_KEY", emu.secret_key)
        monkeypatch.setenv("SDM_API_HOST", emu.address)
        monkeypatch.setenv("SDM_API_ROOT_CERTIFICATES", str(ca))
        async with sdm_async.Client.from_env() as client:
            assert [u async for u in client.accounts.list("")] == []
        monkeypatch.setenv("SDM_API_ROOT_CERTIFICATES", str(tmp_path / "missing.pem"))
        with pytest.raises(ValueError, match=r"SDM_API_ROOT_CERTIFICATES=.*cannot be read"):
            sdm_async.Client.from_env()


def test_a_certificate_and_key_that_do_not_match_are_refused() -> None:
    one, other = make_certificate(), make_certificate()
    with pytest.raises(ValueError, match="does not belong"):
        Emulator(tls_cert=one.cert_pem, tls_key=other.key_pem)
    with pytest.raises(ValueError, match="not a PEM certificate"):
        Emulator(tls_cert=b"junk", tls_key=one.key_pem)
    with pytest.raises(ValueError, match="not an unencrypted PEM private key"):
        Emulator(tls_cert=one.cert_pem, tls_key=b"junk")
    with pytest.raises(ValueError, match="both tls_cert and tls_key"):
        Emulator(tls_cert=one.cert_pem)
    assert "BEGIN" not in repr(one) and "***" in repr(one)


PROG = [sys.executable, "-m", "sdm_async", "emulator", "--port", "0"]
ADMIN = ["--access-key", KEY, "--secret-key", SECRET]


def _pem_files(tmp_path: Path) -> tuple[bytes, list[str]]:
    pair = make_certificate()
    (tmp_path / "cert.pem").write_bytes(pair.cert_pem)
    (tmp_path / "key.pem").write_bytes(pair.key_pem)
    return pair.cert_pem, [
        *("--tls-cert", str(tmp_path / "cert.pem")),
        *("--tls-key", str(tmp_path / "key.pem")),
    ]


@contextmanager
def _serving(*args: str) -> Iterator[str]:
    """`sdm-async emulator ARGS` until the block ends; yields the address it listens on."""
    with processes.emulator_process("--port", "0", *ADMIN, *args) as (_, address):
        yield address


async def test_the_command_serves_tls_from_pem_files(tmp_path: Path) -> None:
    cert, tls = _pem_files(tmp_path)
    with _serving(*tls) as address:
        async with sdm_async.Client(KEY, SECRET, address, root_certificates=cert) as client:
            assert [u async for u in client.accounts.list("")] == []


def test_the_command_refuses_half_a_pair_or_an_unreadable_file(tmp_path: Path) -> None:
    _, tls = _pem_files(tmp_path)
    for bad in (tls[:2], [*tls[:2], "--tls-key", str(tmp_path / "missing.pem")]):
        done = subprocess.run([*PROG, *ADMIN, *bad], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
        assert "Traceback" not in done.stderr and "listening" not in done.stdout
