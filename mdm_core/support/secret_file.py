"""Generated secrets kept in the data directory, one per file, shared by every process.

A server runs as several processes (``posture serve`` starts 2 workers by default) that must
agree on every secret they generate: the session-cookie key, the dev-mode CA passphrase. A
secret drawn per process breaks whatever another process signed. :func:`load_or_create_secret`
draws a secret once and keeps it in a file of mode 0600:

- **Created atomically.** The secret is written in full to a private temporary file, then
  ``link()``-ed to its name, which fails if the name exists: of processes starting at once
  exactly one wins, and nobody ever reads a half-written file. Everyone then reads the file.
- **Checked on every start.** A file that exists but cannot be read, is readable or writable
  by group or others, or does not hold a secret (URL-safe base64 text, at least 43
  characters = 256 bits) stops the process with :class:`SecretFileError` naming the file and
  what to do. It is never silently replaced: other processes or hosts may be using it.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from pathlib import Path

from mdm_core.domain.errors import ConfigurationError

__all__ = ["SecretFileError", "load_or_create_secret", "MIN_SECRET_CHARS"]

#: ``secrets.token_urlsafe(32)``: 32 random bytes, 43 characters.
MIN_SECRET_CHARS = 43
_MAX_SECRET_CHARS = 1024
_SECRET_RE = re.compile(rf"[A-Za-z0-9_-]{{{MIN_SECRET_CHARS},{_MAX_SECRET_CHARS}}}")


class SecretFileError(ConfigurationError):
    """A secret file exists but cannot be used; the message names the file and the fix."""

    reason = "secret_file_invalid"


def _read(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise SecretFileError(f"{path}: cannot read the secret file: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SecretFileError(f"{path}: not a regular file")
        if info.st_mode & 0o077:
            raise SecretFileError(
                f"{path}: mode {stat.S_IMODE(info.st_mode):04o} lets other users read or change "
                f"the secret; it must be 0600 (chmod 600 {path})"
            )
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(_MAX_SECRET_CHARS + 2)
    except OSError as exc:
        raise SecretFileError(f"{path}: cannot read the secret file: {exc.strerror}") from exc
    finally:
        os.close(fd)
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError:
        text = ""
    if not _SECRET_RE.fullmatch(text):
        raise SecretFileError(
            f"{path}: does not hold a secret (expected {MIN_SECRET_CHARS}-{_MAX_SECRET_CHARS} "
            "URL-safe base64 characters); restore it, or delete it to generate a new one "
            "(which ends what the old one protected)"
        )
    return text


def load_or_create_secret(path: Path) -> str:
    """The secret in ``path``, generating it first if the file does not exist.

    Every process calling this for the same path gets the same secret. Raises
    :class:`SecretFileError` for a file that exists but is unusable (see the module docs).
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists() and not path.is_symlink():
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(secrets.token_urlsafe(32) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp, path)  # atomic, and refuses an existing name: one winner
            except FileExistsError:
                pass  # another process won the race: use its secret
        finally:
            tmp.unlink(missing_ok=True)
    return _read(path)
