"""Tests for carelink.keys: key files, passphrases, key IDs and subkeys."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import inspect
import json
import os
import pickle
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carelink import keys
from carelink.errors import EXIT_KEY, ConfigError, KeyFileError
from carelink.keys import (
    Key,
    change_passphrase,
    describe_key_file,
    load_key_file,
    new_key_file,
    resolve_passphrase,
    rotate_key_file,
)

#: Small scrypt cost so the suite stays fast; the default (2**15) is checked separately.
FAST_N = 2**10
PASSPHRASE = "correct horse battery staple"
FIXED_SECRET = bytes(range(32))


def _secret(key: Key) -> bytes:
    """Reach into the private slot; only tests do this."""
    return key._secret


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _edit(path: Path, change) -> None:
    """Rewrite a key file's JSON through ``change`` (keeping mode 0600)."""
    document = json.loads(path.read_text(encoding="utf-8"))
    change(document)
    path.write_text(json.dumps(document), encoding="utf-8")
    os.chmod(path, 0o600)


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    return tmp_path / "linkage.key"


@pytest.fixture
def made(key_path: Path) -> Key:
    return new_key_file(key_path, "linkage", PASSPHRASE, scrypt_n=FAST_N)


# --- RFC 5869 HKDF, written independently of the cryptography package --------------------------


def rfc5869_hkdf_sha256(ikm: bytes, salt: bytes | None, info: bytes, length: int) -> bytes:
    if not salt:
        salt = b"\x00" * hashlib.sha256().digest_size
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
        counter += 1
    return okm[:length]


def test_reference_hkdf_matches_rfc5869_test_case_1() -> None:
    okm = rfc5869_hkdf_sha256(
        bytes.fromhex("0b" * 22), bytes.fromhex("000102030405060708090a0b0c"), bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"), 42
    )
    assert okm.hex() == ("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")


def test_reference_hkdf_matches_rfc5869_test_case_3_no_salt() -> None:
    okm = rfc5869_hkdf_sha256(bytes.fromhex("0b" * 22), None, b"", 42)
    assert okm.hex() == ("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8")


# --- creating and loading ---------------------------------------------------------------------


def test_round_trip(key_path: Path, made: Key) -> None:
    loaded = load_key_file(key_path, PASSPHRASE)
    assert loaded == made
    assert loaded.kind == "linkage"
    assert loaded.key_id == made.key_id
    assert _secret(loaded) == _secret(made)
    assert len(_secret(loaded)) == 32
    assert loaded.field_key("nhs_number") == made.field_key("nhs_number")


def test_export_kind_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "export.key"
    key = new_key_file(path, "export", PASSPHRASE, scrypt_n=FAST_N)
    assert key.kind == "export"
    assert key.key_id.startswith("cex-")
    assert load_key_file(path, PASSPHRASE, expected_kind="export") == key


def test_file_layout(key_path: Path, made: Key) -> None:
    document = json.loads(key_path.read_text(encoding="utf-8"))
    assert document["format"] == "carelink-key"
    assert document["version"] == 1
    assert document["kind"] == "linkage"
    assert document["key_id"] == made.key_id
    assert document["created"].endswith("Z")
    assert document["cipher"] == "AES-256-GCM"
    assert document["kdf"]["name"] == "scrypt"
    assert (document["kdf"]["n"], document["kdf"]["r"], document["kdf"]["p"]) == (FAST_N, 8, 1)
    assert len(base64.b64decode(document["nonce"])) == 12
    assert len(base64.b64decode(document["ciphertext"])) == 32 + 16
    raw = key_path.read_bytes()
    assert _secret(made) not in raw
    assert _secret(made).hex().encode() not in raw
    assert base64.b64encode(_secret(made)) not in raw


def test_default_scrypt_n_is_2_to_15(tmp_path: Path) -> None:
    assert keys.DEFAULT_SCRYPT_N == 2**15
    for fn in (new_key_file, rotate_key_file, change_passphrase):
        assert inspect.signature(fn).parameters["scrypt_n"].default == 2**15
    path = tmp_path / "default.key"
    new_key_file(path, "linkage", PASSPHRASE)
    assert json.loads(path.read_text())["kdf"]["n"] == 2**15


def test_mode_is_0600_right_after_creation(key_path: Path, made: Key) -> None:
    assert _mode(key_path) == 0o600


def test_mode_is_0600_even_with_permissive_umask(key_path: Path) -> None:
    old = os.umask(0)
    try:
        new_key_file(key_path, "linkage", PASSPHRASE, scrypt_n=FAST_N)
    finally:
        os.umask(old)
    assert _mode(key_path) == 0o600


def test_no_temp_files_left_behind(tmp_path: Path, key_path: Path, made: Key) -> None:
    assert [p.name for p in tmp_path.iterdir()] == [key_path.name]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602])
def test_refuses_file_open_to_group_or_others(key_path: Path, made: Key, mode: int) -> None:
    os.chmod(key_path, mode)
    with pytest.raises(KeyFileError) as info:
        load_key_file(key_path, PASSPHRASE)
    assert "chmod 600" in info.value.message
    assert str(key_path) in info.value.message
    assert info.value.exit_code == EXIT_KEY


def test_owner_read_only_is_accepted(key_path: Path, made: Key) -> None:
    os.chmod(key_path, 0o400)
    assert load_key_file(key_path, PASSPHRASE) == made


def test_overwrite_refused_without_flag(key_path: Path, made: Key) -> None:
    before = key_path.read_bytes()
    with pytest.raises(KeyFileError) as info:
        new_key_file(key_path, "linkage", PASSPHRASE, scrypt_n=FAST_N)
    assert "exists" in info.value.message
    assert key_path.read_bytes() == before
    replaced = new_key_file(key_path, "linkage", PASSPHRASE, overwrite=True, scrypt_n=FAST_N)
    assert replaced.key_id != made.key_id
    assert load_key_file(key_path, PASSPHRASE) == replaced
    assert _mode(key_path) == 0o600


def test_wrong_passphrase(key_path: Path, made: Key) -> None:
    wrong = "Tr0ub4dor&3-not-the-passphrase"
    with pytest.raises(KeyFileError) as info:
        load_key_file(key_path, wrong)
    error = info.value
    assert error.exit_code == 4 == EXIT_KEY
    message = error.message
    assert "\n" not in message
    assert str(key_path) in message
    assert "wrong passphrase or the key file was tampered with" in message
    secret = _secret(made)
    for forbidden in (
        wrong,
        PASSPHRASE,
        secret.hex(),
        secret.hex().upper(),
        base64.b64encode(secret).decode(),
        base64.urlsafe_b64encode(secret).decode(),
        base64.b64encode(secret).decode().rstrip("="),
    ):
        assert forbidden not in message
        assert forbidden not in str(error)
        assert forbidden not in repr(error)
    assert error.__cause__ is None and error.__suppress_context__


def _tamper_ciphertext(document: dict) -> None:
    raw = bytearray(base64.b64decode(document["ciphertext"]))
    raw[0] ^= 0x01
    document["ciphertext"] = base64.b64encode(bytes(raw)).decode()


def _tamper_tag(document: dict) -> None:
    raw = bytearray(base64.b64decode(document["ciphertext"]))
    raw[-1] ^= 0x80
    document["ciphertext"] = base64.b64encode(bytes(raw)).decode()


def _tamper_nonce(document: dict) -> None:
    raw = bytearray(base64.b64decode(document["nonce"]))
    raw[0] ^= 0x01
    document["nonce"] = base64.b64encode(bytes(raw)).decode()


def _tamper_salt(document: dict) -> None:
    raw = bytearray(base64.b64decode(document["kdf"]["salt"]))
    raw[0] ^= 0x01
    document["kdf"]["salt"] = base64.b64encode(bytes(raw)).decode()


def _tamper_key_id(document: dict) -> None:
    document["key_id"] = "clk-0000000000000000"


def _tamper_kind(document: dict) -> None:
    document["kind"] = "export"


def _tamper_created(document: dict) -> None:
    document["created"] = "2000-01-01T00:00:00Z"


def _tamper_n(document: dict) -> None:
    document["kdf"]["n"] = FAST_N * 2


def _tamper_r(document: dict) -> None:
    document["kdf"]["r"] = 4


@pytest.mark.parametrize(
    "tamper",
    [
        _tamper_ciphertext,
        _tamper_tag,
        _tamper_nonce,
        _tamper_salt,
        _tamper_key_id,
        _tamper_kind,
        _tamper_created,
        _tamper_n,
        _tamper_r,
    ],
)
def test_tampering_is_refused(key_path: Path, made: Key, tamper) -> None:
    _edit(key_path, tamper)
    with pytest.raises(KeyFileError) as info:
        load_key_file(key_path, PASSPHRASE)
    assert "tampered" in info.value.message
    assert info.value.exit_code == EXIT_KEY


def test_key_id_is_checked_against_decrypted_key(key_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A writer that stored the wrong key ID (but authenticated it) is still caught after decryption.
    real = keys.key_id_for
    monkeypatch.setattr(keys, "key_id_for", lambda kind, secret: "clk-ffffffffffffffff")
    new_key_file(key_path, "linkage", PASSPHRASE, scrypt_n=FAST_N)
    monkeypatch.setattr(keys, "key_id_for", real)
    with pytest.raises(KeyFileError, match="key ID does not match"):
        load_key_file(key_path, PASSPHRASE)


def test_expected_kind(key_path: Path, made: Key) -> None:
    assert load_key_file(key_path, PASSPHRASE, expected_kind="linkage") == made
    with pytest.raises(KeyFileError) as info:
        load_key_file(key_path, PASSPHRASE, expected_kind="export")
    assert "linkage" in info.value.message and "export" in info.value.message
    with pytest.raises(ConfigError):
        load_key_file(key_path, PASSPHRASE, expected_kind="nonsense")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.key"
    with pytest.raises(KeyFileError) as info:
        load_key_file(path, PASSPHRASE)
    assert str(path) in info.value.message and "not found" in info.value.message
    with pytest.raises(KeyFileError):
        describe_key_file(path)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00",
        b"[1, 2, 3]",
        b'{"format": "something-else", "version": 1}',
        b'{"format": "carelink-key"}',
        b'{"format": "carelink-key", "version": true}',
        b'{"format": "carelink-key", "version": 1, "kind": "linkage"}',
        b"[" * 50000,
    ],
)
def test_not_a_key_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError) as info:
        load_key_file(path, PASSPHRASE)
    assert str(path) in info.value.message
    assert "\n" not in info.value.message


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.update(version=2),
        lambda d: d.update(cipher="ChaCha20"),
        lambda d: d.update(kind="master"),
        lambda d: d["kdf"].update(name="pbkdf2"),
        lambda d: d["kdf"].update(n=2**40),
        lambda d: d["kdf"].update(n=1000),
        lambda d: d["kdf"].update(p=10**6),
        lambda d: d.update(nonce="!!!"),
        lambda d: d.update(ciphertext=base64.b64encode(b"short").decode()),
        lambda d: d.pop("ciphertext"),
    ],
)
def test_malformed_header_refused(key_path: Path, made: Key, change) -> None:
    _edit(key_path, change)
    with pytest.raises(KeyFileError):
        load_key_file(key_path, PASSPHRASE)


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError):
        load_key_file(tmp_path, PASSPHRASE)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        new_key_file(tmp_path / "a.key", "master", PASSPHRASE, scrypt_n=FAST_N)
    for n in (1000, 2**9, 2**21, True):
        with pytest.raises(ConfigError):
            new_key_file(tmp_path / "a.key", "linkage", PASSPHRASE, scrypt_n=n)
    with pytest.raises(KeyFileError):
        new_key_file(tmp_path / "a.key", "linkage", "", scrypt_n=FAST_N)
    with pytest.raises(KeyFileError, match="does not exist"):
        new_key_file(tmp_path / "missing-dir" / "a.key", "linkage", PASSPHRASE, scrypt_n=FAST_N)
    assert not (tmp_path / "a.key").exists()


# --- key IDs and subkeys ----------------------------------------------------------------------


def test_key_id_deterministic_and_distinct(tmp_path: Path) -> None:
    expected = "clk-" + hmac.new(FIXED_SECRET, b"carelink key id v1", hashlib.sha256).hexdigest()[:16]
    a = Key.from_secret_for_tests("linkage", FIXED_SECRET)
    b = Key.from_secret_for_tests("linkage", FIXED_SECRET)
    assert a.key_id == b.key_id == expected
    assert Key.from_secret_for_tests("export", FIXED_SECRET).key_id == "cex-" + expected[4:]
    k1 = new_key_file(tmp_path / "1.key", "linkage", PASSPHRASE, scrypt_n=FAST_N)
    k2 = new_key_file(tmp_path / "2.key", "linkage", PASSPHRASE, scrypt_n=FAST_N)
    assert k1.key_id != k2.key_id
    assert k1 != k2
    assert len(k1.key_id) == len("clk-") + 16
    assert _secret(k1).hex()[:16] not in k1.key_id


def test_field_key_known_answer() -> None:
    key = Key.from_secret_for_tests("linkage", FIXED_SECRET)
    for field in ("nhs_number", "date_of_birth", "postcode", "név"):
        expected = rfc5869_hkdf_sha256(FIXED_SECRET, None, b"carelink/field/" + field.encode("utf-8"), 32)
        assert key.field_key(field) == expected
    expected = rfc5869_hkdf_sha256(FIXED_SECRET, None, b"carelink/recipient/public-health", 32)
    assert key.recipient_key("public-health") == expected


def test_field_keys_differ_per_field_and_per_key() -> None:
    a = Key.from_secret_for_tests("linkage", FIXED_SECRET)
    b = Key.from_secret_for_tests("linkage", bytes(32))
    names = ["nhs_number", "postcode", "date_of_birth", "local_id"]
    derived = {a.field_key(n) for n in names} | {b.field_key(n) for n in names}
    assert len(derived) == 2 * len(names)
    assert a.field_key("x") != a.recipient_key("x")
    assert all(len(k) == 32 for k in derived)
    assert a.field_key("nhs_number") is a.field_key("nhs_number")  # cached
    with pytest.raises(ConfigError):
        a.field_key("")
    with pytest.raises(ConfigError):
        a.recipient_key(None)  # type: ignore[arg-type]


@settings(max_examples=50, deadline=None)
@given(
    secret=st.binary(min_size=32, max_size=32),
    field=st.text(min_size=1, max_size=40).filter(lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)),
)
def test_field_key_matches_reference_property(secret: bytes, field: str) -> None:
    key = Key.from_secret_for_tests("linkage", secret)
    assert key.field_key(field) == rfc5869_hkdf_sha256(secret, None, b"carelink/field/" + field.encode(), 32)


def test_from_secret_for_tests_validates() -> None:
    with pytest.raises(ConfigError):
        Key.from_secret_for_tests("linkage", b"short")
    with pytest.raises(ConfigError):
        Key.from_secret_for_tests("other", FIXED_SECRET)
    with pytest.raises(TypeError):
        Key("linkage", FIXED_SECRET)


# --- not leaking the secret -------------------------------------------------------------------


def test_repr_has_no_secret() -> None:
    key = Key.from_secret_for_tests("linkage", FIXED_SECRET)
    for text in (repr(key), str(key), f"{key}", f"{key!r}", repr([key]), repr({"k": key})):
        assert "linkage" in text and key.key_id in text
        assert FIXED_SECRET.hex() not in text
        assert FIXED_SECRET.hex()[:8] not in text
        assert base64.b64encode(FIXED_SECRET).decode() not in text
        assert repr(FIXED_SECRET) not in text
        assert repr(FIXED_SECRET)[2:12] not in text


def test_key_is_hard_to_leak() -> None:
    key = Key.from_secret_for_tests("linkage", FIXED_SECRET)
    assert not hasattr(key, "__dict__")
    with pytest.raises(TypeError):
        vars(key)
    public = [name for name in dir(key) if not name.startswith("_")]
    for name in public:
        value = getattr(key, name)
        assert value != FIXED_SECRET
    with pytest.raises(AttributeError):
        key.kind = "export"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        key.secret = b"x"  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        pickle.dumps(key)
    assert copy.copy(key) is key and copy.deepcopy(key) is key


# --- rotation and passphrase change -----------------------------------------------------------


def test_rotate(key_path: Path, made: Key) -> None:
    new, retired = rotate_key_file(key_path, PASSPHRASE, scrypt_n=FAST_N)
    assert retired == key_path.with_suffix(f".{made.key_id}.retired")
    assert retired.name == f"linkage.{made.key_id}.retired"
    assert new.kind == made.kind
    assert new.key_id != made.key_id
    assert _mode(retired) == 0o600
    assert _mode(key_path) == 0o600
    assert load_key_file(retired, PASSPHRASE) == made
    assert load_key_file(key_path, PASSPHRASE) == new
    assert sorted(p.name for p in key_path.parent.iterdir()) == sorted([key_path.name, retired.name])


def test_rotate_wrong_passphrase_changes_nothing(key_path: Path, made: Key) -> None:
    before = key_path.read_bytes()
    with pytest.raises(KeyFileError):
        rotate_key_file(key_path, "wrong", scrypt_n=FAST_N)
    assert key_path.read_bytes() == before
    assert [p.name for p in key_path.parent.iterdir()] == [key_path.name]


def test_rotate_refuses_to_overwrite_retired(key_path: Path, made: Key) -> None:
    retired = key_path.with_suffix(f".{made.key_id}.retired")
    retired.write_text("something precious")
    before = key_path.read_bytes()
    with pytest.raises(KeyFileError, match="retired"):
        rotate_key_file(key_path, PASSPHRASE, scrypt_n=FAST_N)
    assert retired.read_text() == "something precious"
    assert key_path.read_bytes() == before
    assert sorted(p.name for p in key_path.parent.iterdir()) == sorted([key_path.name, retired.name])


def test_change_passphrase(key_path: Path, made: Key) -> None:
    created = describe_key_file(key_path)["created"]
    with pytest.raises(KeyFileError):
        change_passphrase(key_path, "wrong", "new passphrase", scrypt_n=FAST_N)
    same = change_passphrase(key_path, PASSPHRASE, "new passphrase", scrypt_n=FAST_N)
    assert same == made
    with pytest.raises(KeyFileError):
        load_key_file(key_path, PASSPHRASE)
    assert load_key_file(key_path, "new passphrase") == made
    assert describe_key_file(key_path)["created"] == created
    assert _mode(key_path) == 0o600
    with pytest.raises(KeyFileError):
        change_passphrase(key_path, "new passphrase", "", scrypt_n=FAST_N)


# --- passphrase resolution --------------------------------------------------------------------


def test_passphrase_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARELINK_PASSPHRASE", "from env")
    assert resolve_passphrase() == "from env"
    monkeypatch.setenv("OTHER_VAR", "other")
    assert resolve_passphrase("OTHER_VAR") == "other"


def test_passphrase_missing_names_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CARELINK_PASSPHRASE", raising=False)
    with pytest.raises(KeyFileError) as info:
        resolve_passphrase()
    assert "CARELINK_PASSPHRASE" in info.value.message
    assert info.value.exit_code == EXIT_KEY
    monkeypatch.setenv("CARELINK_PASSPHRASE", "")
    with pytest.raises(KeyFileError, match="empty"):
        resolve_passphrase()


def test_passphrase_from_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARELINK_PASSPHRASE", "from env")
    pass_file = tmp_path / "pass.txt"
    pass_file.write_text("from file  \n")
    os.chmod(pass_file, 0o600)
    assert resolve_passphrase(passphrase_file=pass_file) == "from file  "
    pass_file.write_text("crlf\r\n")
    assert resolve_passphrase(passphrase_file=pass_file) == "crlf"


def test_passphrase_file_refused_when_open_or_empty_or_missing(tmp_path: Path) -> None:
    pass_file = tmp_path / "pass.txt"
    pass_file.write_text("secret words\n")
    os.chmod(pass_file, 0o644)
    with pytest.raises(KeyFileError) as info:
        resolve_passphrase(passphrase_file=pass_file)
    assert "chmod 600" in info.value.message and str(pass_file) in info.value.message
    assert "secret words" not in info.value.message
    os.chmod(pass_file, 0o600)
    pass_file.write_text("\n")
    with pytest.raises(KeyFileError, match="empty"):
        resolve_passphrase(passphrase_file=pass_file)
    with pytest.raises(KeyFileError, match="not found"):
        resolve_passphrase(passphrase_file=tmp_path / "absent.txt")


def test_resolved_passphrase_opens_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARELINK_PASSPHRASE", PASSPHRASE)
    key = new_key_file(tmp_path / "k.key", "linkage", resolve_passphrase(), scrypt_n=FAST_N)
    assert load_key_file(tmp_path / "k.key", resolve_passphrase()) == key


# --- describe ---------------------------------------------------------------------------------


def test_describe_without_passphrase(key_path: Path, made: Key) -> None:
    info = describe_key_file(key_path)
    assert info["kind"] == "linkage"
    assert info["key_id"] == made.key_id
    assert info["cipher"] == "AES-256-GCM"
    assert info["kdf"] == "scrypt"
    assert info["created"].endswith("Z")
    assert info["mode"] == "0600" and info["mode_ok"] is True
    text = json.dumps(info)
    document = json.loads(key_path.read_text())
    assert document["ciphertext"] not in text
    assert document["kdf"]["salt"] not in text
    assert _secret(made).hex() not in text


def test_describe_reports_open_mode(key_path: Path, made: Key) -> None:
    os.chmod(key_path, 0o644)
    info = describe_key_file(key_path)
    assert info["mode"] == "0644" and info["mode_ok"] is False
