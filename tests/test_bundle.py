"""Signed policy bundles: every tampering is refused on one line, and only as BundleRefused.

The sidecar loads a policy only from a bundle that verifies (DESIGN.md: "Bundles
are signed. The sidecar refuses a bundle that does not verify and keeps its last
good one"). Bundles arrive over xDS and come back from disk, so both are treated
as hostile input here: bit flips in each region, truncation at each boundary,
forged lengths, manifests a compromised signer could write, files swapped on disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from pathlib import Path

import pytest
import wasmtime
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ext_proc.policy import load_policy
from policies.bundle import (
    BundleRefused,
    BundleStore,
    SigningKey,
    StoreFull,
    TrustedKeys,
    VerifiedBundle,
    build_signed_bundle,
    ensure_signing_key,
    generate_signing_key,
    key_id,
    load_signing_key,
    load_trusted_keys,
    public_key_path,
    sign_bundle,
    verify_bundle,
)
from policies.bundle.format import HEADER, HEADER_BYTES, MAGIC, SIGNATURE_BYTES
from policies.compiler import compile_sources
from policies.core.errors import ConfigError
from policies.runtime import ABI_VERSION, PolicyModule
from policies.runtime.module import META_SECTION, Metadata, runtime_sha256
from policies.runtime.wasmbin import add_custom_section

ENTRY = "a1/t/allow"
SOURCE = "package a1.t\n\nallow if input.x == 1\n"
KEY = SigningKey.generate()
OTHER = SigningKey.generate()
TRUSTED = TrustedKeys([KEY.public_key()])
MODULE = compile_sources({"p.rego": SOURCE}, None, [ENTRY])
MODULE2 = compile_sources({"p.rego": SOURCE.replace("== 1", "== 2")}, None, [ENTRY])
BUNDLE = sign_bundle(MODULE, entrypoint=ENTRY, key=KEY)
VERSION = hashlib.sha256(MODULE).hexdigest()


def small_module(pad: int) -> bytes:
    """A cheap module with a valid a1.meta (never loaded): its size and version vary with pad."""
    wasm = add_custom_section(bytes(wasmtime.wat2wasm("(module)")), "pad", b"\xaa" * pad)
    meta = Metadata(ABI_VERSION, [ENTRY], [["x"]], True, "0" * 64, runtime_sha256())
    return add_custom_section(wasm, META_SECTION, meta.to_json())


def regions(data: bytes) -> dict[str, tuple[int, int]]:
    """[start, end) of each region of ``data``, read from its header."""
    _, _, _, manifest_len, module_len = HEADER.unpack_from(data)
    module_at = HEADER_BYTES + manifest_len
    sig_at = module_at + module_len
    return {
        "magic": (0, 8),
        "format": (8, 10),
        "key_id": (10, 18),
        "manifest_len": (18, 22),
        "module_len": (22, 26),
        "manifest": (HEADER_BYTES, module_at),
        "module": (module_at, sig_at),
        "signature": (sig_at, sig_at + SIGNATURE_BYTES),
    }


def forge(
    manifest: bytes | str | dict,
    module: bytes = MODULE,
    *,
    key: SigningKey = KEY,
    fmt: int = 1,
    magic: bytes = MAGIC,
    kid: bytes | None = None,
    lengths: tuple[int, int] | None = None,
) -> bytes:
    """A bundle of any content, validly signed: what a buggy or compromised signer can send."""
    if isinstance(manifest, dict):
        manifest = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    if isinstance(manifest, str):
        manifest = manifest.encode("utf-8", "surrogatepass")
    m_len, mod_len = lengths or (len(manifest), len(module))
    header = HEADER.pack(magic, fmt, kid or bytes.fromhex(key.key_id), m_len, mod_len)
    signed = header + manifest + module
    return signed + key.sign(signed)


def good_manifest(**over: object) -> dict:
    out: dict = {"entrypoint": ENTRY, "source_sha256": "0" * 64, "version": VERSION}
    out.update(over)
    return out


def refused(data: bytes, message: str, keys: TrustedKeys = TRUSTED, **kw: int) -> str:
    with pytest.raises(BundleRefused) as info:
        verify_bundle(data, keys, source="res/b1", **kw)
    text = str(info.value)
    assert "\n" not in text and text.startswith("res/b1: "), text
    assert message in text, text
    assert isinstance(info.value, ConfigError) and info.value.code == 2
    return text


def flip(data: bytes, at: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[at] ^= mask
    return bytes(out)


# -- round trip and determinism ----------------------------------------------------------


def test_a_signed_bundle_verifies_and_its_module_loads() -> None:
    bundle = verify_bundle(BUNDLE, TRUSTED)
    assert bundle.version == VERSION == PolicyModule.load(bundle.module).version
    assert (bundle.entrypoint, bundle.module, bundle.key_id) == (ENTRY, MODULE, KEY.key_id)
    assert bundle.data == BUNDLE and bundle.source_sha256 != "0" * 64
    policy = load_policy(bundle.module, bundle.entrypoint, "res/b1")
    assert policy.evaluator(ENTRY).evaluate({"x": 1}) is True
    assert "module bytes" in repr(bundle) and len(repr(bundle)) < 200


def test_the_same_inputs_give_identical_bytes_so_replicas_agree(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    generate_signing_key(path)
    replica_a = build_signed_bundle(MODULE, ENTRY, path)
    replica_b = sign_bundle(bytes(MODULE), entrypoint=ENTRY, key=load_signing_key(path))
    assert replica_a == replica_b
    assert sign_bundle(MODULE, entrypoint=ENTRY, key=KEY) == BUNDLE


def test_the_layout_is_the_documented_one() -> None:
    r = regions(BUNDLE)
    assert BUNDLE[:8] == b"A1BUNDLE" and BUNDLE[8:10] == b"\0\1"
    assert BUNDLE[10:18].hex() == KEY.key_id
    manifest = BUNDLE[slice(*r["manifest"])]
    assert json.loads(manifest) == good_manifest(
        source_sha256=json.loads(manifest)["source_sha256"]
    )
    assert BUNDLE[slice(*r["module"])] == MODULE
    assert r["signature"][1] == len(BUNDLE)


def test_key_id_is_the_first_16_hex_of_the_raw_public_keys_sha256() -> None:
    raw = KEY.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert KEY.key_id == key_id(KEY.public_key()) == hashlib.sha256(raw).hexdigest()[:16]


# -- tampering ---------------------------------------------------------------------------

FLIP_MESSAGES = {
    "magic": "no A1BUNDLE magic",
    "format": "format version",
    "key_id": "signed by unknown key",
    "manifest": "signature does not verify",
    "module": "signature does not verify",
    "signature": "signature does not verify",
}


@pytest.mark.parametrize("region", sorted(FLIP_MESSAGES))
def test_a_bit_flipped_anywhere_in_a_region_is_refused(region: str) -> None:
    start, end = regions(BUNDLE)[region]
    for at in sorted({start, (start + end) // 2, end - 1}):
        for mask in (0x01, 0x80):
            refused(flip(BUNDLE, at, mask), FLIP_MESSAGES[region])


@pytest.mark.parametrize("region", ["manifest_len", "module_len"])
def test_a_flipped_length_never_reads_past_the_data(region: str) -> None:
    start, end = regions(BUNDLE)[region]
    for at in range(start, end):
        for mask in (0x01, 0x80):
            text = refused(flip(BUNDLE, at, mask), "")
            assert any(w in text for w in ("truncated", "trailing", "over the cap")), text


def test_truncation_at_every_boundary_is_refused() -> None:
    cuts = {0, 1, 8, 10, 18, 22, HEADER_BYTES - 1}
    for start, end in regions(BUNDLE).values():
        cuts |= {start, start + 1, end - 1, end}
    for cut in sorted(c for c in cuts if c < len(BUNDLE)):
        refused(BUNDLE[:cut], "truncated")


def test_bytes_appended_after_the_signature_are_refused() -> None:
    refused(BUNDLE + b"\0", "1 trailing bytes after the signature")
    refused(BUNDLE + BUNDLE, f"{len(BUNDLE)} trailing bytes")


def test_a_module_swapped_in_from_another_bundle_is_refused() -> None:
    other = sign_bundle(MODULE2, entrypoint=ENTRY, key=KEY)
    a, b = regions(BUNDLE), regions(other)
    module_b = other[slice(*b["module"])]
    header = HEADER.pack(MAGIC, 1, bytes.fromhex(KEY.key_id),
                         a["manifest"][1] - a["manifest"][0], len(module_b))
    spliced = (header + BUNDLE[slice(*a["manifest"])] + module_b
               + BUNDLE[slice(*a["signature"])])
    refused(spliced, "signature does not verify")
    resigned_sig = other[slice(*b["signature"])]  # and with the other bundle's signature
    refused(spliced[:-SIGNATURE_BYTES] + resigned_sig, "signature does not verify")


def test_a_bundle_signed_by_an_untrusted_key_is_refused() -> None:
    text = refused(sign_bundle(MODULE, entrypoint=ENTRY, key=OTHER),
                   f"signed by unknown key {OTHER.key_id}")
    assert f"trusted: {KEY.key_id}" in text
    refused(BUNDLE, "trusted: none", keys=TrustedKeys())


def test_a_forger_naming_a_trusted_key_id_fails_the_signature() -> None:
    forged = forge(good_manifest(), key=OTHER, kid=bytes.fromhex(KEY.key_id))
    refused(forged, f"signature does not verify with key {KEY.key_id}")


def test_an_unsigned_bare_module_is_refused_as_unsigned() -> None:
    refused(MODULE, "unsigned: a bare WebAssembly module")
    refused(MODULE[:4], "unsigned")


def test_not_a_bundle_at_all_is_refused() -> None:
    refused(b"", "truncated: 0 bytes")
    refused(b"x" * 200, "no A1BUNDLE magic")
    refused(b"A1BUNDLX" + BUNDLE[8:], "no A1BUNDLE magic")


def test_a_future_format_version_is_refused() -> None:
    refused(forge(good_manifest(), fmt=2), "res/b1: format version 2; this reader knows version 1")


def test_lengths_pointing_beyond_the_data_are_refused() -> None:
    refused(forge(good_manifest(), lengths=(0xFFFF_FFFF, len(MODULE))), "manifest length")
    refused(forge(good_manifest(), lengths=(100, 0xFFFF_FFFF)), "module length 4294967295")
    refused(forge(good_manifest(), lengths=(100, 1 << 20)), "truncated: the header declares")


def test_an_empty_module_or_manifest_is_refused() -> None:
    refused(forge(good_manifest(), module=b""), "empty module")
    refused(forge(b""), "empty manifest")
    with pytest.raises(ConfigError, match="cannot sign: empty module"):
        sign_bundle(b"", entrypoint=ENTRY, key=KEY)


def test_the_module_cap_is_configurable() -> None:
    refused(BUNDLE, f"module length {len(MODULE)} is over the cap of 100", max_module_bytes=100)
    cap = HEADER_BYTES + 64 * 1024 + 10 + SIGNATURE_BYTES
    refused(b"\0" * (cap + 1), f"{cap + 1} bytes, more than the cap of {cap}", max_module_bytes=10)
    with pytest.raises(ConfigError, match="over the cap of 100"):
        sign_bundle(MODULE, entrypoint=ENTRY, key=KEY, max_module_bytes=100)


def test_a_digest_that_does_not_match_the_module_is_refused() -> None:
    wrong = forge(good_manifest(version="1" * 64))
    refused(wrong, "is not the manifest's version 1111111111111111")
    assert verify_bundle(forge(good_manifest()), TRUSTED).version == VERSION


MANIFESTS: list[tuple[str, bytes | str | dict, str]] = [
    ("duplicate key", '{"entrypoint":"a","entrypoint":"b"}', "duplicate field 'entrypoint'"),
    ("extra field", good_manifest(created_at="2024"), "unknown field 'created_at'"),
    ("missing field", {"entrypoint": ENTRY, "version": VERSION}, "missing field 'source_sha256'"),
    ("wrong type", good_manifest(entrypoint=["a"]), "entrypoint: must be a string, got array"),
    ("null", good_manifest(version=None), "manifest.version: must be a string, got null"),
    ("huge number", '{"entrypoint":' + "9" * 60000 + "}", "must be a string, got number"),
    ("float", '{"entrypoint":1e999999}', "must be a string, got number"),
    ("nan", '{"entrypoint":NaN}', "not JSON: NaN is not JSON"),
    ("deep nesting", "[" * 60000 + "]" * 4000, "nested too deeply"),
    ("deep objects", '{"a":' * 13000, "manifest: nested too deeply"),
    ("not an object", '["entrypoint"]', "must be a JSON object, got array"),
    ("not utf-8", b'{"entrypoint":"\xff"}', "manifest: not UTF-8 (byte 15)"),
    ("bom", "\ufeff" + json.dumps(good_manifest(), sort_keys=True, separators=(",", ":")),
     "not JSON"),
    ("lone surrogate", '{"\\ud800":1}', "unknown field '\\ud800'"),
    ("long field name", '{"' + "k" * 5000 + '":1}', "unknown field 'kkkkk"),
    ("whitespace", json.dumps(good_manifest(), sort_keys=True), "not canonical JSON"),
    ("unsorted", '{"version":"' + VERSION + '","entrypoint":"' + ENTRY
     + '","source_sha256":"' + "0" * 64 + '"}', "not canonical JSON"),
    ("escaped ascii", json.dumps(good_manifest(), sort_keys=True, separators=(",", ":"))
     .replace("a1/t", "\\u0061\\u0031/t"), "not canonical JSON"),
    ("upper hex", good_manifest(version=VERSION.upper()), "manifest.version: must be 64 lowercase"),
    ("short digest", good_manifest(source_sha256="ab"), "manifest.source_sha256: must be 64"),
    ("entrypoint space", good_manifest(entrypoint="a b"), "manifest.entrypoint: must be 1 to 256"),
    ("entrypoint empty", good_manifest(entrypoint=""), "manifest.entrypoint: must be 1 to 256"),
    ("entrypoint long", good_manifest(entrypoint="a" * 257), "manifest.entrypoint"),
    ("trailing data", json.dumps(good_manifest()) + "x", "not JSON: Extra data"),
]


@pytest.mark.parametrize(("manifest", "message"), [m[1:] for m in MANIFESTS],
                         ids=[m[0] for m in MANIFESTS])
def test_a_signed_but_malformed_manifest_is_refused(manifest: bytes | str, message: str) -> None:
    refused(forge(manifest), message)


def test_a_manifest_over_64_kib_is_refused_before_parsing() -> None:
    refused(forge(" " * (64 * 1024 + 1)), "manifest length 65537 is over the cap of 65536")


# -- properties --------------------------------------------------------------------------


def test_every_byte_matters() -> None:
    """Exhaustive over positions: inverting any one byte is refused (the property below
    samples the values)."""
    for at in range(len(BUNDLE)):
        with pytest.raises(BundleRefused):
            verify_bundle(flip(BUNDLE, at, 0xFF), TRUSTED)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_single_byte_mutation_is_refused(data: st.DataObject) -> None:
    """No byte of a bundle is free: every one is signed, or is the signature, or a length."""
    at = data.draw(st.integers(0, len(BUNDLE) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda v: v != BUNDLE[at]))
    mutated = bytearray(BUNDLE)
    mutated[at] = value
    with pytest.raises(BundleRefused):
        verify_bundle(bytes(mutated), TRUSTED)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(BUNDLE)), st.binary(min_size=0, max_size=40), st.integers(0, 40))
def test_any_splice_is_refused(at: int, insert: bytes, delete: int) -> None:
    mutated = BUNDLE[:at] + insert + BUNDLE[at + delete:]
    if mutated == BUNDLE:
        return
    with pytest.raises(BundleRefused):
        verify_bundle(mutated, TRUSTED)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.binary(max_size=300).map(lambda b: BUNDLE[:26] + b)))
def test_arbitrary_bytes_raise_only_bundle_refused(data: bytes) -> None:
    with pytest.raises(BundleRefused):
        verify_bundle(data, TRUSTED)


# -- signing refuses what no sidecar could load ------------------------------------------


def test_signing_refuses_a_module_that_is_not_an_a1_policy() -> None:
    with pytest.raises(ConfigError, match="cannot sign: not a WebAssembly module"):
        sign_bundle(b"hello", entrypoint=ENTRY, key=KEY)
    bare = bytes(wasmtime.wat2wasm("(module)"))
    with pytest.raises(ConfigError, match=r"no a1\.meta section"):
        sign_bundle(bare, entrypoint=ENTRY, key=KEY)
    with pytest.raises(ConfigError, match=r"no entrypoint 'a1/t/deny' \(it has a1/t/allow\)"):
        sign_bundle(MODULE, entrypoint="a1/t/deny", key=KEY)
    with pytest.raises(ConfigError, match="printable ASCII"):
        sign_bundle(MODULE, entrypoint="a1/t/ allow", key=KEY)


# -- key files ---------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_a_generated_key_is_private_and_its_public_half_sits_beside_it(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    key = generate_signing_key(path)
    assert mode(path) == 0o600 and mode(public_key_path(path)) == 0o644
    assert public_key_path(path) == tmp_path / "signing.pub"
    assert load_signing_key(path).key_id == key.key_id
    assert load_trusted_keys(tmp_path).ids() == [key.key_id]
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind
    with pytest.raises(ConfigError, match="already exists; refusing to replace"):
        generate_signing_key(path)
    assert ensure_signing_key(path).key_id == key.key_id  # a1 up, the second time


def test_ensure_makes_a_dev_key_once(tmp_path: Path) -> None:
    first = ensure_signing_key(tmp_path / "dev.key")
    assert ensure_signing_key(tmp_path / "dev.key").key_id == first.key_id
    os.unlink(tmp_path / "dev.pub")
    ensure_signing_key(tmp_path / "dev.key")
    assert load_trusted_keys(tmp_path / "dev.pub").ids() == [first.key_id]
    (tmp_path / "dev.pub").write_bytes(OTHER.public_pem())  # stale: rewritten from the key
    ensure_signing_key(tmp_path / "dev.key")
    assert load_trusted_keys(tmp_path / "dev.pub").ids() == [first.key_id]


def test_a_fifo_planted_as_a_key_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.pub")
    with pytest.raises(ConfigError, match=r"fifo\.pub: not a regular file"):
        load_trusted_keys(tmp_path)
    os.mkfifo(tmp_path / "fifo.key", 0o600)
    with pytest.raises(ConfigError, match=r"fifo\.key: not a regular file"):
        load_signing_key(tmp_path / "fifo.key")


def test_public_keys_may_be_mounted_as_symlinks(tmp_path: Path) -> None:
    """Kubernetes delivers ConfigMap and Secret files as symlinks; a public key is public."""
    (tmp_path / "..data").mkdir()
    (tmp_path / "..data" / "a.pub").write_bytes(KEY.public_pem())
    (tmp_path / "trust").mkdir()
    (tmp_path / "trust" / "a.pub").symlink_to(tmp_path / "..data" / "a.pub")
    assert load_trusted_keys(tmp_path / "trust").ids() == [KEY.key_id]


def test_a_symlinked_private_key_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real.key"
    generate_signing_key(real)
    link = tmp_path / "link.key"
    link.symlink_to(real)
    with pytest.raises(ConfigError, match=r"link\.key: is a symlink; refusing to follow it"):
        load_signing_key(link)
    with pytest.raises(ConfigError, match="is a symlink"):
        build_signed_bundle(MODULE, ENTRY, link)
    with pytest.raises(ConfigError, match="already exists"):  # nor generated through
        generate_signing_key(link)
    dangling = tmp_path / "dangling.key"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="already exists"):
        generate_signing_key(dangling)
    assert not (tmp_path / "nowhere").exists()


def test_a_private_key_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    generate_signing_key(path)
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="mode 0640 lets others read or write"):
        load_signing_key(path)


def test_key_files_of_the_wrong_kind_are_refused(tmp_path: Path) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    pem = ec_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
    (tmp_path / "ec.key").write_bytes(pem)
    (tmp_path / "ec.key").chmod(0o600)
    with pytest.raises(ConfigError, match=r"ec\.key: not an Ed25519 private key"):
        load_signing_key(tmp_path / "ec.key")
    (tmp_path / "junk.key").write_bytes(b"junk")
    (tmp_path / "junk.key").chmod(0o600)
    with pytest.raises(ConfigError, match=r"junk\.key: not an unencrypted PEM private key"):
        load_signing_key(tmp_path / "junk.key")
    (tmp_path / "big.key").write_bytes(b"x" * 20000)
    (tmp_path / "big.key").chmod(0o600)
    with pytest.raises(ConfigError, match="more than 16384 bytes"):
        load_signing_key(tmp_path / "big.key")
    pub = ec_key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "ec.pub").write_bytes(pub)
    with pytest.raises(ConfigError, match=r"ec\.pub: not an Ed25519 public key"):
        load_trusted_keys(tmp_path)
    with pytest.raises(ConfigError, match="missing: cannot read: No such file"):
        load_trusted_keys(tmp_path / "missing")
    (tmp_path / "none").mkdir()
    with pytest.raises(ConfigError, match="none: no trusted bundle keys"):
        load_trusted_keys(tmp_path / "none")


def test_rotation_trusts_old_and_new_keys_at_once(tmp_path: Path) -> None:
    old = generate_signing_key(tmp_path / "old.key")
    new = generate_signing_key(tmp_path / "new.key")
    keys = load_trusted_keys([tmp_path / "old.pub", tmp_path / "new.pub"])
    assert keys.ids() == sorted([old.key_id, new.key_id]) == load_trusted_keys(tmp_path).ids()
    for key in (old, new):
        assert verify_bundle(sign_bundle(MODULE, entrypoint=ENTRY, key=key), keys).key_id == (
            key.key_id
        )
    # the version names the module, so re-signing with the new key changes no version
    old_b = verify_bundle(sign_bundle(MODULE, entrypoint=ENTRY, key=old), keys)
    new_b = verify_bundle(sign_bundle(MODULE, entrypoint=ENTRY, key=new), keys)
    assert old_b.version == new_b.version and old_b.data != new_b.data
    only_new = load_trusted_keys(tmp_path / "new.pub")
    refused(old_b.data, f"signed by unknown key {old.key_id}", keys=only_new)


# -- the last-known-good store -----------------------------------------------------------


def store_bundle(pad: int) -> VerifiedBundle:
    module = small_module(pad)
    return verify_bundle(sign_bundle(module, entrypoint=ENTRY, key=KEY), TRUSTED)


def distinct(n: int, pad: int = 1000) -> list[VerifiedBundle]:
    return [store_bundle(pad + i) for i in range(n)]


def test_the_store_round_trips_a_bundle_privately(tmp_path: Path) -> None:
    store = BundleStore(tmp_path / "lkg")
    assert loadable(store) == []
    bundle = verify_bundle(BUNDLE, TRUSTED)
    store.save(bundle)
    assert mode(tmp_path / "lkg") == 0o700
    assert mode(store.path(bundle.version)) == 0o600
    assert store.load(bundle.version, TRUSTED) == bundle
    again = BundleStore(tmp_path / "lkg")  # a restarted sidecar
    assert loadable(again)[0] == bundle


def test_the_store_keeps_the_newest_n_bundles(tmp_path: Path) -> None:
    store = BundleStore(tmp_path, max_bundles=3)
    bundles = distinct(5)
    for b in bundles:
        store.save(b)
    assert store.versions() == [b.version for b in reversed(bundles[2:])]
    assert loadable(store)[0] == bundles[-1]
    store.save(bundles[2])  # saving again makes it the newest
    assert store.versions()[0] == bundles[2].version


def test_the_store_is_bounded_in_bytes(tmp_path: Path) -> None:
    bundles = distinct(6, pad=10_000)
    size = len(bundles[-1].data)
    store = BundleStore(tmp_path, max_bundles=100, max_bytes=size * 2 + size // 2)
    for i, b in enumerate(bundles):
        store.save(b)
        assert store.total_bytes() <= store.max_bytes
        assert len(store.versions()) == min(i + 1, 2)
    assert store.versions() == [bundles[-1].version, bundles[-2].version]
    big = store_bundle(size * 3)
    with pytest.raises(StoreFull, match="over 100 /"):
        store.save(big)
    assert store.versions() == [bundles[-1].version, bundles[-2].version]  # nothing lost


def test_pinned_bundles_are_never_evicted(tmp_path: Path) -> None:
    store = BundleStore(tmp_path, max_bundles=2)
    a, b, c, d = distinct(4)
    store.save(a)
    store.save(b, keep={a.version})
    store.save(c, keep={a.version})
    assert set(store.versions()) == {a.version, c.version}
    with pytest.raises(StoreFull, match="would hold 3 bundles"):
        store.save(d, keep={a.version, c.version})
    assert set(store.versions()) == {a.version, c.version}


def loadable(store: BundleStore) -> list[VerifiedBundle]:
    """Every stored bundle that verifies, newest first."""
    out = []
    for version in store.versions():
        with contextlib.suppress(BundleRefused):
            out.append(store.load(version, TRUSTED))
    return out


def test_a_tampered_file_on_disk_is_refused_and_the_older_one_loads(tmp_path: Path) -> None:
    store = BundleStore(tmp_path)
    old, new = distinct(2)
    store.save(old)
    store.save(new)
    path = store.path(new.version)
    path.write_bytes(flip(path.read_bytes(), len(new.data) - 100))
    with pytest.raises(BundleRefused, match=f"{path}: signature does not verify"):
        store.load(new.version, TRUSTED)
    assert loadable(store) == [old]


def test_a_bundle_file_renamed_to_another_version_is_refused(tmp_path: Path) -> None:
    store = BundleStore(tmp_path)
    a, b = distinct(2)
    store.save(a)
    store.save(b)
    store.path(b.version).write_bytes(a.data)
    with pytest.raises(BundleRefused, match=f"holds bundle {a.version[:16]}, not"):
        store.load(b.version, TRUSTED)


def test_store_files_that_are_symlinks_or_too_big_are_refused(tmp_path: Path) -> None:
    store = BundleStore(tmp_path / "s", max_module_bytes=5000)
    b = store_bundle(100)
    outside = tmp_path / "outside"
    outside.write_bytes(b.data)
    store.path(b.version).symlink_to(outside)
    with pytest.raises(BundleRefused, match="is a symlink"):
        store.load(b.version, TRUSTED)
    big = store_bundle(6000)
    store.path(big.version).write_bytes(big.data)
    with pytest.raises(BundleRefused, match="module length 6276 is over the cap of 5000"):
        store.load(big.version, TRUSTED)
    store.path(big.version).write_bytes(big.data + b"\0" * 65536)
    with pytest.raises(BundleRefused, match="bundle: more than 70626 bytes"):
        store.load(big.version, TRUSTED)
    with pytest.raises(ConfigError, match="not a bundle version"):
        store.load("../../etc/passwd", TRUSTED)
    assert loadable(store) == []


def test_a_symlinked_store_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(ConfigError, match="link: is a symlink"):
        BundleStore(tmp_path / "link")


def test_applied_state_round_trips_atomically(tmp_path: Path) -> None:
    store = BundleStore(tmp_path, max_state_bytes=1000)
    assert store.load_state("assignment") is None
    doc = json.dumps({"default": VERSION, "cells": {"c1": VERSION}}).encode()
    store.save_state("assignment", doc)
    store.save_state("cells.next", b"{}")
    assert store.load_state("assignment") == doc
    assert mode(tmp_path / "state" / "assignment") == 0o600
    for bad in ("../x", "a/b", "", ".hidden", "A", "x" * 80):
        with pytest.raises(ConfigError, match="not a state name"):
            store.save_state(bad, b"{}")
    with pytest.raises(StoreFull, match="over the cap of 1000"):
        store.save_state("cells", b"x" * 1001)
    (tmp_path / "state" / "cells").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="is a symlink"):
        store.load_state("cells")


def test_a_crash_mid_write_leaves_no_temporary_file_behind(tmp_path: Path) -> None:
    BundleStore(tmp_path)
    stale = tmp_path / "bundles" / f".{VERSION}.bundle.0011223344556677.tmp"
    stale.write_bytes(b"half")
    BundleStore(tmp_path)
    assert not stale.exists()

