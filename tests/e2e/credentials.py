"""Throwaway broker credentials for the end-to-end tests: a CA with a server certificate
for 127.0.0.1 and a client certificate (made with the ``openssl`` command line), and a
Mosquitto password file (made with ``mosquitto_passwd``).

A missing program skips the test. The files are readable by everyone: the broker
reads them after dropping to the ``mosquitto`` user, so they must live in a folder
that user can enter (the ``broker_files`` fixture, tests/e2e/conftest.py).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def openssl(folder: Path, *args: str) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command line is not installed")
    subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)


def signed_certificate(folder: Path, name: str, extensions: str) -> tuple[Path, Path]:
    """A P-256 key and a certificate for it signed by ``ca.crt`` in ``folder``."""
    (folder / f"{name}.ext").write_text(extensions)
    openssl(folder, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
    openssl(folder, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-out", f"{name}.crt",
            "-extfile", f"{name}.ext")
    return folder / f"{name}.crt", folder / f"{name}.key"


def issue_certificates(folder: Path) -> Certificates:
    """A throwaway CA, a server certificate for 127.0.0.1 / localhost and a client one."""
    openssl(folder, "req", "-x509", "-new", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=wattline test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    leaf = ("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    server_cert, server_key = signed_certificate(
        folder, "server",
        leaf + "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
    client_cert, client_key = signed_certificate(folder, "client",
                                                 leaf + "extendedKeyUsage=clientAuth\n")
    for path in folder.iterdir():
        path.chmod(0o644)  # throwaway keys; the broker reads its own as ``mosquitto``
    return Certificates(folder / "ca.crt", server_cert, server_key, client_cert, client_key)


def write_password_file(folder: Path, user: str, password: str) -> Path:
    """A Mosquitto password file with one user, made by ``mosquitto_passwd``."""
    program = shutil.which("mosquitto_passwd")
    if program is None:
        pytest.skip("mosquitto_passwd is not installed (Debian package mosquitto)")
    path = folder / "passwords"
    subprocess.run([program, "-b", "-c", str(path), user, password], check=True,
                   capture_output=True)
    path.chmod(0o644)
    return path
