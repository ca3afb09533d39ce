"""Key management: create, load, rotate and describe passphrase-protected carelink key files.

A carelink key is 32 random bytes. It never leaves this module in the clear: callers get a :class:`Key`
that derives per-field and per-recipient subkeys with HKDF-SHA256, and whose ``repr`` shows only the
kind and the key ID (a fingerprint, never the key).

On disk a key is a small JSON document (UTF-8, mode 0600)::

    {"format": "carelink-key", "version": 1, "kind": "linkage", "key_id": "clk-...",
     "created": "2025-01-01T00:00:00Z",
     "kdf": {"name": "scrypt", "salt": "<b64>", "n": 32768, "r": 8, "p": 1},
     "cipher": "AES-256-GCM", "nonce": "<b64>", "ciphertext": "<b64>"}

The key is encrypted with AES-256-GCM under a key derived from the passphrase with scrypt. Every header
field (format, version, kind, key_id, created, kdf parameters, cipher) is bound as associated data, so
changing any of them makes decryption fail exactly as a wrong passphrase does.

Every problem with a key file raises :class:`~carelink.errors.KeyFileError` (exit code 4); bad
arguments raise :class:`~carelink.errors.ConfigError`. Messages are one line, name the file, and never
contain the passphrase or key material.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from carelink.errors import ConfigError, KeyFileError

__all__ = [
    "DEFAULT_PASSPHRASE_ENV",
    "DEFAULT_SCRYPT_N",
    "KEY_KINDS",
    "KEY_LENGTH",
    "Key",
    "change_passphrase",
    "describe_key_file",
    "key_id_for",
    "load_key_file",
    "new_key_file",
    "resolve_passphrase",
    "rotate_key_file",
]

#: Length of a carelink key, in bytes.
KEY_LENGTH = 32
#: Key kinds and the prefix of their key IDs.
KEY_KINDS: dict[str, str] = {"linkage": "clk-", "export": "cex-"}
#: Environment variable read by :func:`resolve_passphrase` by default.
DEFAULT_PASSPHRASE_ENV = "CARELINK_PASSPHRASE"

FORMAT = "carelink-key"
VERSION = 1
CIPHER = "AES-256-GCM"
KDF_NAME = "scrypt"

#: scrypt cost parameter for new key files (tests may pass a smaller ``scrypt_n``).
DEFAULT_SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
# Bounds accepted for scrypt parameters, both when writing and when reading a (possibly hostile) file.
MIN_SCRYPT_N = 2**10
MAX_SCRYPT_N = 2**20
MAX_SCRYPT_R = 32
MAX_SCRYPT_P = 16
MAX_SCRYPT_MEMORY = 2**30  # 128 * n * r bytes; refuse files that would need more than 1 GiB

SALT_LENGTH = 16
NONCE_LENGTH = 12
TAG_LENGTH = 16
MAX_KEY_FILE_BYTES = 64 * 1024

_KEY_ID_INFO = b"carelink key id v1"
_AAD_PREFIX = b"carelink-key aad v1\n"
_FIELD_INFO = b"carelink/field/"
_RECIPIENT_INFO = b"carelink/recipient/"
_REVERSIBLE_INFO = b"carelink/reversible/"
_STORAGE_INFO = b"carelink/storage/"
_HEADER_FIELDS = ("format", "version", "kind", "key_id", "created", "kdf", "cipher", "nonce", "ciphertext")


# --------------------------------------------------------------------------------------------- Key


def key_id_for(kind: str, secret: bytes) -> str:
    """Return the key ID (a fingerprint) of a key.

    Args:
        kind: ``"linkage"`` or ``"export"``.
        secret: The 32-byte key.

    Returns:
        ``"clk-"`` (linkage) or ``"cex-"`` (export) followed by the first 16 hex characters of
        HMAC-SHA256(key, ``b"carelink key id v1"``).
    """
    _check_kind(kind, None)
    digest = hmac.new(secret, _KEY_ID_INFO, hashlib.sha256).hexdigest()
    return KEY_KINDS[kind] + digest[:16]


def _hkdf(secret: bytes, info: bytes, length: int = KEY_LENGTH) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)


class Key:
    """A carelink key: derives subkeys, never shows its secret.

    Instances are immutable. ``repr``/``str`` show only ``kind`` and ``key_id``; the secret lives in a
    private slot (there is no ``__dict__``), and pickling is refused so it cannot be serialised by
    accident (``copy`` returns the same object). Build one with :func:`new_key_file` or :func:`load_key_file`, or, in tests and
    benchmarks only, :meth:`from_secret_for_tests`.
    """

    __slots__ = ("_key_id", "_kind", "_secret", "_subkeys")

    _kind: str
    _key_id: str
    _secret: bytes
    _subkeys: dict[bytes, bytes]

    def __init__(self, kind: str, secret: bytes, *, _token: object = None) -> None:
        if _token is not _CONSTRUCT:
            raise TypeError("Key cannot be built directly; use load_key_file() or new_key_file()")
        _check_kind(kind, None)
        if not isinstance(secret, bytes) or len(secret) != KEY_LENGTH:
            raise ConfigError(None, "secret", f"a key must be {KEY_LENGTH} bytes")
        object.__setattr__(self, "_kind", kind)
        object.__setattr__(self, "_secret", bytes(secret))
        object.__setattr__(self, "_key_id", key_id_for(kind, secret))
        object.__setattr__(self, "_subkeys", {})

    @classmethod
    def from_secret_for_tests(cls, kind: str, secret: bytes) -> Key:
        """Build a key from fixed bytes. For tests and benchmarks only; real keys come from key files.

        Args:
            kind: ``"linkage"`` or ``"export"``.
            secret: Exactly 32 bytes.

        Returns:
            The key.

        Raises:
            ConfigError: If ``kind`` is unknown or ``secret`` is not 32 bytes.
        """
        return cls(kind, secret, _token=_CONSTRUCT)

    @property
    def kind(self) -> str:
        """``"linkage"`` or ``"export"``."""
        return self._kind

    @property
    def key_id(self) -> str:
        """The key's fingerprint, e.g. ``"clk-0123456789abcdef"``; safe to log and to write in manifests."""
        return self._key_id

    def field_key(self, field: str) -> bytes:
        """Return the 32-byte subkey for one field (HKDF-SHA256, info ``b"carelink/field/" + field``).

        Raises:
            ConfigError: If ``field`` is not a non-empty string.
        """
        return self._subkey(_FIELD_INFO, field, "field")

    def recipient_key(self, recipient: str) -> bytes:
        """Return the 32-byte subkey for one recipient (HKDF-SHA256, info ``b"carelink/recipient/" + recipient``).

        Raises:
            ConfigError: If ``recipient`` is not a non-empty string.
        """
        return self._subkey(_RECIPIENT_INFO, recipient, "recipient")

    def reversible_key(self, field: str) -> bytes:
        """Return the 64-byte AES-SIV key for one reversible field (HKDF-SHA256, info
        ``b"carelink/reversible/" + field``): separate from the field's token key.

        Raises:
            ConfigError: If ``field`` is not a non-empty string.
        """
        return self._subkey(_REVERSIBLE_INFO, field, "field", length=64)

    def storage_key(self, store: str) -> bytes:
        """Return the 32-byte AES-GCM key for a store the hub keeps between runs (HKDF-SHA256, info
        ``b"carelink/storage/" + store``): separate from every token and recipient key.

        Raises:
            ConfigError: If ``store`` is not a non-empty string.
        """
        return self._subkey(_STORAGE_INFO, store, "store")

    def _subkey(self, info: bytes, name: str, what: str, length: int = KEY_LENGTH) -> bytes:
        if not isinstance(name, str) or not name:
            raise ConfigError(None, what, f"a {what} name must be a non-empty string")
        cache_key = info + name.encode("utf-8")
        cached = self._subkeys.get(cache_key)
        if cached is None:
            cached = _hkdf(self._secret, cache_key, length)
            self._subkeys[cache_key] = cached
        return cached

    def __repr__(self) -> str:
        return f"Key(kind={self._kind!r}, key_id={self._key_id!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Key):
            return NotImplemented
        return self._kind == other._kind and hmac.compare_digest(self._secret, other._secret)

    def __hash__(self) -> int:
        return hash((self._kind, self._key_id))

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("Key is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("Key is immutable")

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError("a carelink Key cannot be pickled or copied; pass the key file path instead")

    def __copy__(self) -> Key:
        return self  # immutable: a copy may be the same object

    def __deepcopy__(self, memo: dict[int, Any]) -> Key:
        return self


_CONSTRUCT = object()


# ------------------------------------------------------------------------------------- passphrases


def resolve_passphrase(env_var: str = DEFAULT_PASSPHRASE_ENV, passphrase_file: Path | None = None) -> str:
    """Find the passphrase: from ``passphrase_file`` if given, else from the environment variable.

    Args:
        env_var: Name of the environment variable to read when no file is given.
        passphrase_file: A file holding the passphrase (trailing newlines are stripped). It must not be
            readable or writable by group or others.

    Returns:
        The passphrase.

    Raises:
        KeyFileError: If the file is missing, unreadable or too open, if neither source is set, or if
            the passphrase is empty.
        ConfigError: If ``env_var`` is empty.
    """
    if passphrase_file is not None:
        path = Path(passphrase_file)
        raw = _read_private_file(path, "passphrase file", limit=MAX_KEY_FILE_BYTES)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise KeyFileError(f"{path}: passphrase file is not valid UTF-8") from None
        passphrase = text.rstrip("\r\n")
        if not passphrase:
            raise KeyFileError(f"{path}: passphrase file is empty")
        return passphrase
    if not env_var:
        raise ConfigError(None, "passphrase environment variable", "must not be empty")
    value = os.environ.get(env_var)
    if value is None:
        raise KeyFileError(f"no passphrase: set the environment variable {env_var} or give a passphrase file")
    if not value:
        raise KeyFileError(f"no passphrase: the environment variable {env_var} is set but empty")
    return value


# ------------------------------------------------------------------------------------- key files


def new_key_file(
    path: Path, kind: str, passphrase: str, *, overwrite: bool = False, scrypt_n: int = DEFAULT_SCRYPT_N
) -> Key:
    """Create a new random key and write it to ``path``, encrypted under ``passphrase``.

    Args:
        path: Where to write the key file (created with mode 0600, atomically).
        kind: ``"linkage"`` (shared with partners) or ``"export"`` (held by the hub).
        passphrase: The passphrase protecting the file.
        overwrite: Replace an existing file at ``path``; refused otherwise.
        scrypt_n: scrypt cost parameter (power of two); keep the default outside tests.

    Returns:
        The new key.

    Raises:
        KeyFileError: If the file exists (and ``overwrite`` is false), cannot be written, or the
            passphrase is empty.
        ConfigError: If ``kind`` or ``scrypt_n`` is invalid.
    """
    path = Path(path)
    _check_kind(kind, path)
    _check_scrypt_n(scrypt_n, path)
    _check_passphrase(passphrase, path)
    if not overwrite and os.path.lexists(path):
        raise KeyFileError(f"{path}: key file already exists; refusing to overwrite it")
    key = Key(kind, secrets.token_bytes(KEY_LENGTH), _token=_CONSTRUCT)
    document = _encrypt(key, passphrase, _utc_now(), scrypt_n)
    _write_atomically(path, document, overwrite=overwrite)
    return key


def load_key_file(path: Path, passphrase: str, *, expected_kind: str | None = None) -> Key:
    """Read and decrypt a key file.

    Args:
        path: The key file.
        passphrase: Its passphrase.
        expected_kind: If given, the kind the key must have.

    Returns:
        The key.

    Raises:
        KeyFileError: If the file is missing, not a carelink key file, readable or writable by group or
            others, tampered with, opened with the wrong passphrase, or of the wrong kind.
        ConfigError: If ``expected_kind`` is not a known kind.
    """
    path = Path(path)
    if expected_kind is not None:
        _check_kind(expected_kind, path)
    _check_passphrase(passphrase, path)
    header = _read_key_document(path)
    if expected_kind is not None and header["kind"] != expected_kind:
        raise KeyFileError(f"{path}: this is a {header['kind']} key, but {expected_kind!r} is needed")
    return _decrypt(path, header, passphrase)


def rotate_key_file(path: Path, passphrase: str, *, scrypt_n: int = DEFAULT_SCRYPT_N) -> tuple[Key, Path]:
    """Replace the key in ``path`` with a new one of the same kind, keeping the old file as retired.

    The old file (after its passphrase is checked) is kept at
    ``path.with_suffix(".<old key_id>.retired")`` with mode 0600; the new key is written to ``path``
    under the same passphrase. At no point is there no copy of the old key on disk.

    Args:
        path: The key file to rotate.
        passphrase: Its passphrase (also used for the new key).
        scrypt_n: scrypt cost parameter for the new file; keep the default outside tests.

    Returns:
        The new key and the path of the retired file.

    Raises:
        KeyFileError: If the current file cannot be loaded, the retired file already exists, or a file
            cannot be written.
        ConfigError: If ``scrypt_n`` is invalid.
    """
    path = Path(path)
    _check_scrypt_n(scrypt_n, path)
    old = load_key_file(path, passphrase)
    retired = path.with_suffix(f".{old.key_id}.retired")
    if os.path.lexists(retired):
        raise KeyFileError(f"{retired}: retired key file already exists; refusing to overwrite it")
    new = Key(old.kind, secrets.token_bytes(KEY_LENGTH), _token=_CONSTRUCT)
    document = _encrypt(new, passphrase, _utc_now(), scrypt_n)
    tmp = _write_temp(path, document)
    try:
        try:
            os.link(path, retired)  # never overwrites; old key stays at `path` until the replace below
        except FileExistsError:
            raise KeyFileError(f"{retired}: retired key file already exists; refusing to overwrite it") from None
        except OSError:
            # Filesystems without hard links: fall back to a rename (checked for existence above).
            os.replace(path, retired)
        os.chmod(retired, 0o600)
        os.replace(tmp, path)
    except KeyFileError:
        _unlink_quietly(tmp)
        raise
    except OSError as exc:
        _unlink_quietly(tmp)
        raise KeyFileError(f"{path}: cannot rotate key file: {_os_reason(exc)}") from None
    _fsync_dir(path.parent)
    return new, retired


def change_passphrase(path: Path, old: str, new: str, *, scrypt_n: int = DEFAULT_SCRYPT_N) -> Key:
    """Re-encrypt the key in ``path`` under a new passphrase (same key, key ID and creation time).

    Args:
        path: The key file.
        old: Its current passphrase.
        new: The new passphrase.
        scrypt_n: scrypt cost parameter for the rewritten file; keep the default outside tests.

    Returns:
        The (unchanged) key.

    Raises:
        KeyFileError: If the file cannot be loaded with ``old``, ``new`` is empty, or the file cannot
            be written.
        ConfigError: If ``scrypt_n`` is invalid.
    """
    path = Path(path)
    _check_scrypt_n(scrypt_n, path)
    _check_passphrase(new, path)
    header = _read_key_document(path)
    key = _decrypt(path, header, old)
    document = _encrypt(key, new, header["created"], scrypt_n)
    _write_atomically(path, document, overwrite=True)
    return key


def describe_key_file(path: Path) -> dict[str, Any]:
    """Describe a key file from its header alone (no passphrase needed; backs ``carelink keys show``).

    Args:
        path: The key file.

    Returns:
        ``path``, ``kind``, ``key_id``, ``created``, ``cipher``, ``kdf`` (the KDF name), ``version``,
        ``mode`` (e.g. ``"0600"``) and ``mode_ok`` (false if group or others can read or write it).
        Nothing secret is returned.

    Raises:
        KeyFileError: If the file is missing or not a carelink key file.
    """
    path = Path(path)
    header, mode = _read_key_document_with_mode(path, require_private=False)
    return {
        "path": str(path),
        "kind": header["kind"],
        "key_id": header["key_id"],
        "created": header["created"],
        "cipher": header["cipher"],
        "kdf": header["kdf"]["name"],
        "version": header["version"],
        "mode": f"{mode:04o}",
        "mode_ok": mode & 0o077 == 0,
    }


# ------------------------------------------------------------------------------------- internals


def _check_kind(kind: object, path: Path | None) -> None:
    if not isinstance(kind, str) or kind not in KEY_KINDS:
        raise ConfigError(path, "kind", f"must be one of {', '.join(sorted(KEY_KINDS))}, not {kind!r}")


def _check_scrypt_n(n: object, path: Path) -> None:
    if (
        not isinstance(n, int)
        or isinstance(n, bool)
        or n < MIN_SCRYPT_N
        or n > MAX_SCRYPT_N
        or n & (n - 1)
        or 128 * n * SCRYPT_R > MAX_SCRYPT_MEMORY
    ):
        raise ConfigError(path, "scrypt_n", f"must be a power of two from {MIN_SCRYPT_N} to {MAX_SCRYPT_N}")


def _check_passphrase(passphrase: object, path: Path) -> None:
    if not isinstance(passphrase, str):
        raise ConfigError(path, "passphrase", "must be a string")
    if not passphrase:
        raise KeyFileError(f"{path}: the passphrase is empty")


def _utc_now() -> str:
    return datetime.now(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _derive_wrapping_key(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    # surrogateescape: a passphrase taken from os.environ round-trips to the bytes that were set.
    secret = passphrase.encode("utf-8", "surrogateescape")
    return Scrypt(salt=salt, length=KEY_LENGTH, n=n, r=r, p=p).derive(secret)


def _associated_data(header: dict[str, Any]) -> bytes:
    bound = {
        "format": header["format"],
        "version": header["version"],
        "kind": header["kind"],
        "key_id": header["key_id"],
        "created": header["created"],
        "kdf": {k: header["kdf"][k] for k in ("name", "salt", "n", "r", "p")},
        "cipher": header["cipher"],
    }
    return _AAD_PREFIX + json.dumps(bound, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _encrypt(key: Key, passphrase: str, created: str, scrypt_n: int) -> dict[str, Any]:
    salt = secrets.token_bytes(SALT_LENGTH)
    nonce = secrets.token_bytes(NONCE_LENGTH)
    header: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "kind": key.kind,
        "key_id": key.key_id,
        "created": created,
        "kdf": {"name": KDF_NAME, "salt": _b64(salt), "n": scrypt_n, "r": SCRYPT_R, "p": SCRYPT_P},
        "cipher": CIPHER,
    }
    wrapping = _derive_wrapping_key(passphrase, salt, scrypt_n, SCRYPT_R, SCRYPT_P)
    ciphertext = AESGCM(wrapping).encrypt(nonce, key._secret, _associated_data(header))
    header["nonce"] = _b64(nonce)
    header["ciphertext"] = _b64(ciphertext)
    return header


def _decrypt(path: Path, header: dict[str, Any], passphrase: str) -> Key:
    kdf = header["kdf"]
    salt = _b64decode(path, kdf["salt"], "kdf.salt")
    nonce = _b64decode(path, header["nonce"], "nonce")
    ciphertext = _b64decode(path, header["ciphertext"], "ciphertext")
    if len(salt) < SALT_LENGTH:
        _not_a_key_file(path, "kdf.salt is too short")
    if len(nonce) != NONCE_LENGTH:
        _not_a_key_file(path, "nonce has the wrong length")
    if len(ciphertext) != KEY_LENGTH + TAG_LENGTH:
        _not_a_key_file(path, "ciphertext has the wrong length")
    wrapping = _derive_wrapping_key(passphrase, salt, kdf["n"], kdf["r"], kdf["p"])
    try:
        secret = AESGCM(wrapping).decrypt(nonce, ciphertext, _associated_data(header))
    except InvalidTag:
        raise KeyFileError(
            f"{path}: cannot open key file: wrong passphrase or the key file was tampered with"
        ) from None
    key = Key(header["kind"], secret, _token=_CONSTRUCT)
    if not hmac.compare_digest(key.key_id, header["key_id"]):
        raise KeyFileError(f"{path}: key file is corrupt: the stored key ID does not match the key")
    return key


def _b64decode(path: Path, value: str, name: str) -> bytes:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        _not_a_key_file(path, f"{name} is not valid base64")


def _not_a_key_file(path: Path, problem: str) -> NoReturn:
    raise KeyFileError(f"{path}: not a carelink key file: {problem}")


def _os_reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _read_private_file(path: Path, what: str, *, limit: int, require_private: bool = True) -> bytes:
    data, _mode = _read_file_with_mode(path, what, limit=limit, require_private=require_private)
    return data


def _read_file_with_mode(path: Path, what: str, *, limit: int, require_private: bool) -> tuple[bytes, int]:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise KeyFileError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise KeyFileError(f"{path}: {what} is a directory, not a file") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read {what}: {_os_reason(exc)}") from None
    try:
        st = os.fstat(fd)  # check the file we opened, not whatever the path points to now
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"{path}: {what} is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if require_private and mode & 0o077:
            raise KeyFileError(
                f"{path}: {what} is readable or writable by group or others (mode {mode:04o}); run: chmod 600 {path}"
            )
        chunks = []
        remaining = limit + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read {what}: {_os_reason(exc)}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise KeyFileError(f"{path}: {what} is too large (over {limit} bytes)")
    return data, mode


def _read_key_document(path: Path) -> dict[str, Any]:
    header, _mode = _read_key_document_with_mode(path, require_private=True)
    return header


def _read_key_document_with_mode(path: Path, *, require_private: bool) -> tuple[dict[str, Any], int]:
    raw, mode = _read_file_with_mode(path, "key file", limit=MAX_KEY_FILE_BYTES, require_private=require_private)
    try:
        document = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        _not_a_key_file(path, "not UTF-8 text")
    except json.JSONDecodeError as exc:
        _not_a_key_file(path, f"invalid JSON at line {exc.lineno}, column {exc.colno}")
    except (ValueError, RecursionError):
        _not_a_key_file(path, "invalid JSON")
    return _validate_header(path, document), mode


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validate_header(path: Path, document: object) -> dict[str, Any]:
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        _not_a_key_file(path, f'"format" is not "{FORMAT}"')
    version = document.get("version")
    if not _is_int(version):
        _not_a_key_file(path, '"version" is missing or not an integer')
    if version != VERSION:
        raise KeyFileError(f"{path}: unsupported key file version {version}; this carelink reads version {VERSION}")
    missing = [name for name in _HEADER_FIELDS if name not in document]
    if missing:
        _not_a_key_file(path, f"missing {', '.join(missing)}")
    for name in ("kind", "key_id", "created", "cipher", "nonce", "ciphertext"):
        if not isinstance(document[name], str):
            _not_a_key_file(path, f'"{name}" is not a string')
    if document["kind"] not in KEY_KINDS:
        _not_a_key_file(path, f"unknown kind {document['kind']!r}")
    if document["cipher"] != CIPHER:
        _not_a_key_file(path, f"unsupported cipher {document['cipher']!r}")
    kdf = document["kdf"]
    if not isinstance(kdf, dict) or kdf.get("name") != KDF_NAME:
        _not_a_key_file(path, f'"kdf.name" is not "{KDF_NAME}"')
    if not isinstance(kdf.get("salt"), str):
        _not_a_key_file(path, '"kdf.salt" is missing or not a string')
    n, r, p = kdf.get("n"), kdf.get("r"), kdf.get("p")
    if not (_is_int(n) and _is_int(r) and _is_int(p)):
        _not_a_key_file(path, "scrypt parameters n, r, p must be integers")
    if (
        n < MIN_SCRYPT_N
        or n > MAX_SCRYPT_N
        or n & (n - 1)
        or not 1 <= r <= MAX_SCRYPT_R
        or not 1 <= p <= MAX_SCRYPT_P
        or 128 * n * r > MAX_SCRYPT_MEMORY
    ):
        _not_a_key_file(path, "scrypt parameters are out of range")
    return document


def _serialise(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, ensure_ascii=True) + "\n").encode("utf-8")


def _write_temp(path: Path, document: dict[str, Any]) -> Path:
    """Write ``document`` to a fresh 0600 temp file next to ``path``, fsynced; return the temp path."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(tmp, flags, 0o600)
    except FileNotFoundError:
        raise KeyFileError(f"{path}: cannot write key file: directory {path.parent} does not exist") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot write key file: {_os_reason(exc)}") from None
    try:
        os.fchmod(fd, 0o600)  # exact mode whatever the umask
        data = _serialise(document)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        _unlink_quietly(tmp)
        raise KeyFileError(f"{path}: cannot write key file: {_os_reason(exc)}") from None
    os.close(fd)
    return tmp


def _write_atomically(path: Path, document: dict[str, Any], *, overwrite: bool) -> None:
    tmp = _write_temp(path, document)
    try:
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # atomic and never overwrites
            except FileExistsError:
                raise KeyFileError(f"{path}: key file already exists; refusing to overwrite it") from None
            except OSError:
                # Filesystems without hard links: best effort check, then rename.
                if os.path.lexists(path):
                    raise KeyFileError(f"{path}: key file already exists; refusing to overwrite it") from None
                os.replace(tmp, path)
    except KeyFileError:
        _unlink_quietly(tmp)
        raise
    except OSError as exc:
        _unlink_quietly(tmp)
        raise KeyFileError(f"{path}: cannot write key file: {_os_reason(exc)}") from None
    _unlink_quietly(tmp)
    _fsync_dir(path.parent)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
