"""A private OpenLDAP ``slapd`` for the tests and the LDAP benchmark.

Started from a generated ``slapd.conf`` in a temporary directory on ephemeral ports, with two
``back_mdb`` databases:

- ``dc=ad,dc=test``: an *AD-like* directory. OpenLDAP cannot run Active Directory, so the AD
  attributes the sync reads (binary ``objectGUID``, ``userAccountControl``, ``uSNChanged``,
  ``sAMAccountName``, ``userPrincipalName``) and the ``user`` / ``group`` object classes are
  declared by a small custom schema (:data:`AD_LIKE_SCHEMA`, private OIDs). ``uSNChanged``
  is not maintained by slapd: the data helpers set it on every write, as a DC would.
  AD's in-chain matching rule (1.2.840.113556.1.4.1941) cannot be declared, so this server
  exercises the fallback (recursive expansion).
- ``dc=ol,dc=test``: a plain OpenLDAP directory (``inetOrgPerson``, ``groupOfNames``,
  ``entryUUID``, ``modifyTimestamp``) with the ``ppolicy`` overlay, whose schema carries
  ``pwdAccountLockedTime``.

TLS: a throwaway CA and a server certificate for ``127.0.0.1`` / ``localhost`` are generated
here; slapd listens on ``ldap://`` (StartTLS) and ``ldaps://``. :attr:`PrivateSlapd.ca_file`
is the CA to trust. Data is bulk-loaded with ``slapadd`` before start (:meth:`PrivateSlapd.
start` takes LDIF text), the fast path for the 50,000-user benchmark.

A missing ``slapd`` is a :class:`tests.services.ServiceMissing` failure with the install hint,
never a skip.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.services import ServiceMissing, free_port

__all__ = [
    "PrivateSlapd",
    "AD_BASE",
    "OL_BASE",
    "ADMIN_PASSWORD",
    "AD_LIKE_SCHEMA",
    "make_ca",
    "SLAPD",
]

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
AD_BASE = "dc=ad,dc=test"
OL_BASE = "dc=ol,dc=test"
ADMIN_PASSWORD = "admin-secret"  # noqa: S105 - a throwaway test directory's root password

#: AD attributes and classes the sync reads, under a private OID arc (1.3.6.1.4.1.99999.*).
AD_LIKE_SCHEMA = """
attributetype ( 1.3.6.1.4.1.99999.1.1 NAME 'objectGUID'
  EQUALITY octetStringMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.1.2 NAME 'userAccountControl'
  EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.1.3 NAME 'uSNChanged'
  EQUALITY integerMatch ORDERING integerOrderingMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.1.4 NAME 'sAMAccountName'
  EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.1.5 NAME 'userPrincipalName'
  EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.99999.2.1 NAME 'user' SUP inetOrgPerson STRUCTURAL
  MUST ( objectGUID $ sAMAccountName )
  MAY ( userAccountControl $ uSNChanged $ userPrincipalName ) )
objectclass ( 1.3.6.1.4.1.99999.2.3 NAME 'computer' SUP user STRUCTURAL )
objectclass ( 1.3.6.1.4.1.99999.2.2 NAME 'group' SUP top STRUCTURAL
  MUST ( cn $ objectGUID )
  MAY ( member $ uSNChanged $ sAMAccountName $ description ) )
"""


def make_ca(directory: Path, name: str = "posture test LDAP CA") -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1/localhost: (ca.pem, cert.pem, key.pem)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    ca_file, cert_file, key_file = (
        directory / "ca.pem",
        directory / "cert.pem",
        directory / "key.pem",
    )
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_file, cert_file, key_file


def _config(root: Path, ca: Path, cert: Path, key: Path) -> str:
    schema = "/etc/ldap/schema"
    dbs = []
    for suffix, name, overlay in ((AD_BASE, "ad", ""), (OL_BASE, "ol", "overlay ppolicy\n")):
        dbs.append(
            f"""
database mdb
suffix "{suffix}"
rootdn "cn=admin,{suffix}"
rootpw {ADMIN_PASSWORD}
directory {root / name}
maxsize 4294967296
dbnosync
index objectClass eq
index entryUUID eq
index uSNChanged eq
index sAMAccountName eq
index uid eq
index member eq
limits dn.exact="cn=admin,{suffix}" size=unlimited time=unlimited
{overlay}"""
        )
    return f"""
include {schema}/core.schema
include {schema}/cosine.schema
include {schema}/inetorgperson.schema
include {root / "ad-like.schema"}
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload ppolicy
pidfile {root / "slapd.pid"}
argsfile {root / "slapd.args"}
sizelimit 500
TLSCACertificateFile {ca}
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}
access to * by * read
""" + "".join(dbs)


def _base_ldif() -> str:
    out = []
    for suffix in (AD_BASE, OL_BASE):
        dc = suffix.split(",")[0].split("=")[1]
        out.append(
            f"dn: {suffix}\nobjectClass: dcObject\nobjectClass: organization\no: {dc}\ndc: {dc}\n"
        )
    return "\n".join(out)


@dataclass
class PrivateSlapd:
    """A throwaway slapd owned by this process (see the module docstring)."""

    root: Path | None = None
    port: int = 0
    ldaps_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    ca_file: Path = field(default_factory=Path)

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    def start(self, ldif: dict[str, str] | None = None) -> PrivateSlapd:
        """Write the config, bulk-load ``ldif`` (suffix -> LDIF text) with slapadd, start."""
        if not (os.path.exists(SLAPD) and os.path.exists(SLAPADD)):
            raise ServiceMissing(
                f"{SLAPD} not found: run `make system-deps` (apt-get install slapd ldap-utils)"
            )
        self.root = Path(tempfile.mkdtemp(prefix="posture-slapd-"))
        for name in ("ad", "ol"):
            (self.root / name).mkdir()
        (self.root / "ad-like.schema").write_text(AD_LIKE_SCHEMA)
        self.ca_file, cert, key = make_ca(self.root / "tls")
        conf = self.root / "slapd.conf"
        conf.write_text(_config(self.root, self.ca_file, cert, key))
        loads = {
            AD_BASE: _base_ldif().split("\n\n")[0] + "\n",
            OL_BASE: _base_ldif().split("\n\n")[1],
        }
        for suffix, text in (ldif or {}).items():
            loads[suffix] = loads[suffix] + "\n" + text
        for suffix, text in loads.items():
            path = self.root / f"load-{suffix.split(',')[0][3:]}.ldif"
            path.write_text(text)
            done = subprocess.run(
                [SLAPADD, "-q", "-f", str(conf), "-b", suffix, "-l", str(path)],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                raise RuntimeError(f"slapadd {suffix} failed: {done.stderr[-2000:]}")
        self.port, self.ldaps_port = free_port(), free_port()
        urls = f"ldap://127.0.0.1:{self.port}/ ldaps://127.0.0.1:{self.ldaps_port}/"
        with open(self.root / "slapd.log", "wb") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen(
                [SLAPD, "-f", str(conf), "-h", urls, "-d", "0"],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self._wait()
        return self

    def _wait(self, timeout: float = 30.0) -> None:
        import socket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                log = (self.root / "slapd.log").read_text(errors="replace") if self.root else ""
                raise RuntimeError(f"slapd exited at start: {log[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    with socket.create_connection(("127.0.0.1", self.ldaps_port), timeout=0.5):
                        return
            except OSError:
                time.sleep(0.05)
        raise ServiceMissing(f"slapd on 127.0.0.1:{self.port} did not come up in {timeout}s")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
            self.proc = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
