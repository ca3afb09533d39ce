"""The recipient-ID store: digests kept between runs, sealed under the export key, never trusted when altered."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import polars as pl
import pytest

from carelink.export import pseudonyms
from carelink.export.pseudonyms import RecipientIdStore, keyed_ids
from carelink.keys import Key

KEY = Key.from_secret_for_tests("export", bytes(range(32)))
OTHER_KEY = Key.from_secret_for_tests("export", bytes(range(1, 33)))


@pytest.fixture
def computed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many digests each HMAC batch computed."""
    batches: list[int] = []
    digests = pseudonyms._digests

    def counting(key: bytes, person_ids: list[str]):
        batches.append(len(person_ids))
        return digests(key, person_ids)
    monkeypatch.setattr(pseudonyms, "_digests", counting)
    return batches


def ids(n: int, start: int = 0) -> pl.Series:
    return pl.Series("person_id", [f"P{i:09d}" for i in range(start, start + n)])


def test_a_second_night_computes_only_the_new_people(tmp_path: Path, computed: list[int]) -> None:
    RecipientIdStore(tmp_path).digests(ids(100), KEY, "cct")
    tonight = pl.concat([ids(5, 200), ids(90, 10)])  # 90 known (in another order), 5 new
    from_store = keyed_ids(tonight, KEY, "cct", RecipientIdStore(tmp_path))
    assert computed == [100, 5]
    assert from_store.equals(keyed_ids(tonight, KEY, "cct"))
    RecipientIdStore(tmp_path).digests(tonight, KEY, "cct")
    assert computed == [100, 5, 95]  # the plain keyed_ids above; the store itself had nothing left to compute


def test_recipients_and_keys_do_not_share_digests(tmp_path: Path, computed: list[int]) -> None:
    store = RecipientIdStore(tmp_path)
    store.digests(ids(10), KEY, "cct")
    other_recipient = keyed_ids(ids(10), KEY, "ics", store)
    other_key = keyed_ids(ids(10), OTHER_KEY, "cct", RecipientIdStore(tmp_path))
    assert computed == [10, 10, 10]
    assert other_recipient.equals(keyed_ids(ids(10), KEY, "ics"))
    assert other_key.equals(keyed_ids(ids(10), OTHER_KEY, "cct"))


def test_the_file_reveals_no_person_id(tmp_path: Path) -> None:
    RecipientIdStore(tmp_path).digests(ids(1000), KEY, "cct")
    blob = (tmp_path / "cct.ids").read_bytes()
    header = blob.split(b"\n", 1)[0]
    assert b"P000000" not in blob and b"PAR1" not in blob  # neither the IDs nor a readable Parquet file
    assert KEY.key_id.encode() in header and b"cct" in header


@pytest.mark.parametrize("damage", ["flip_a_byte", "truncate", "swap_header", "not_json"])
def test_an_altered_store_is_not_used(tmp_path: Path, computed: list[int], caplog: pytest.LogCaptureFixture,
                                      damage: str) -> None:
    RecipientIdStore(tmp_path).digests(ids(50), KEY, "cct")
    path = tmp_path / "cct.ids"
    blob = bytearray(path.read_bytes())
    if damage == "flip_a_byte":
        blob[-20] ^= 1
    elif damage == "truncate":
        del blob[-100:]
    elif damage == "swap_header":  # another nonce: the header is bound to the ciphertext
        header, rest = bytes(blob).split(b"\n", 1)
        made = json.loads(header)
        made["nonce"] = ("1" if made["nonce"][0] == "0" else "0") + made["nonce"][1:]
        blob = bytearray(json.dumps(made, sort_keys=True).encode() + b"\n" + rest)
    else:
        blob[:1] = b"#"
    path.write_bytes(bytes(blob))
    with caplog.at_level(logging.WARNING):
        got = keyed_ids(ids(50), KEY, "cct", RecipientIdStore(tmp_path))
    assert computed == [50, 50]
    assert got.equals(keyed_ids(ids(50), KEY, "cct"))
    assert "altered or unreadable" in caplog.text
    assert KEY.storage_key("recipient-ids").hex() not in caplog.text


def test_empty_and_first_runs(tmp_path: Path) -> None:
    empty = keyed_ids(pl.Series("person_id", [], dtype=pl.String), KEY, "cct", RecipientIdStore(tmp_path))
    assert empty.height == 0
    assert not (tmp_path / "cct.ids").exists()  # nothing computed, nothing written
