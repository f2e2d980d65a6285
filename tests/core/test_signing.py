"""Bundle signatures: keygen, sign, --trust refuses unsigned, other-key, modified-manifest and modified-signature bundles."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys

import pytest

pytest.importorskip("cryptography", reason="signatures need the cryptography package (edgebot[edge])")

from conftest_bundle import edit_manifest
from edgebot.bundle import load_bundle  # noqa: E402
from edgebot.errors import BundleError, ConfigError  # noqa: E402
from edgebot.signing import generate_key, sign_bundle  # noqa: E402


@pytest.fixture
def keys(tmp_path):
    """Two key pairs: ``(private, public)`` of the trusted key and of another one."""
    mine = generate_key(tmp_path / "mine.key")
    other = generate_key(tmp_path / "other.key")
    return {"private": mine[0], "public": mine[1], "id": mine[2], "other_private": other[0], "other_public": other[1]}


def _refused(bundle, trust, *fragments, exc=BundleError):
    with pytest.raises(exc) as info:
        load_bundle(bundle, trust=trust)
    msg = str(info.value)
    assert "\n" not in msg and info.value.exit_code == 2
    for fragment in fragments:
        assert fragment in msg, msg
    return msg


def test_keygen_writes_a_private_key_0600_and_a_public_key(tmp_path, keys):
    assert stat.S_IMODE(os.stat(keys["private"]).st_mode) == 0o600
    assert keys["public"] == tmp_path / "mine.key.pub"
    assert b"PUBLIC KEY" in keys["public"].read_bytes() and b"PRIVATE KEY" in keys["private"].read_bytes()
    assert len(keys["id"]) == 16
    with pytest.raises(ConfigError, match="already exists"):
        generate_key(keys["private"])


def test_keygen_creates_the_key_directory(tmp_path):
    """`edgebot keygen --out keys/bundles.key` on a fresh checkout: keys/ is made, private to the user."""
    private, public, _ = generate_key(tmp_path / "keys" / "bundles.key")
    assert private.is_file() and public.is_file()
    assert stat.S_IMODE(os.stat(tmp_path / "keys").st_mode) & 0o077 == 0


def test_keygen_cli(tmp_path):
    res = subprocess.run([sys.executable, "-m", "edgebot.cli", "keygen", "--out", str(tmp_path / "k")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "k.pub").is_file() and "keep it secret" in res.stdout
    res = subprocess.run([sys.executable, "-m", "edgebot.cli", "keygen", "--out", str(tmp_path / "k")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and res.stderr.startswith("Error: ") and res.stderr.count("\n") == 1


def test_a_signed_bundle_passes_the_signature_check(fake_bundle, keys):
    doc = sign_bundle(fake_bundle, keys["private"])
    assert doc["key_id"] == keys["id"] and doc["algorithm"] == "ed25519"
    # the signature is accepted: the loader goes on to the models (placeholders here)
    _refused(fake_bundle, keys["public"], "hybrid.tflite is not a TFLite model")


def test_an_unsigned_bundle_is_refused(fake_bundle, keys):
    _refused(fake_bundle, keys["public"], "it is not signed", keys["id"], "edgebot convert --sign")


def test_a_bundle_signed_by_another_key_is_refused(fake_bundle, keys):
    sign_bundle(fake_bundle, keys["other_private"])
    _refused(fake_bundle, keys["public"], "signed by key", f"not by the trusted key {keys['id']}")


def test_a_modified_and_resealed_manifest_is_refused(fake_bundle, keys):
    sign_bundle(fake_bundle, keys["private"])
    edit_manifest(fake_bundle, lambda m: m["thresholds"].update(fused=0.999))  # a valid id, but not the signed one
    _refused(fake_bundle, keys["public"], "the signature is for another manifest")


def test_a_modified_manifest_is_refused_before_the_signature(fake_bundle, keys):
    sign_bundle(fake_bundle, keys["private"])
    edit_manifest(fake_bundle, lambda m: m["thresholds"].update(fused=0.999), reseal=False)
    _refused(fake_bundle, keys["public"], "does not match its bundle_id")


def test_a_forged_signature_file_is_refused(fake_bundle, keys):
    """Claim the trusted key id and the new bundle id, keep the old signature bytes: it must not verify."""
    sign_bundle(fake_bundle, keys["private"])
    old = json.loads((fake_bundle / "signature.json").read_text())
    edit_manifest(fake_bundle, lambda m: m["thresholds"].update(fused=0.999))
    new_id = json.loads((fake_bundle / "manifest.json").read_text())["bundle_id"]
    (fake_bundle / "signature.json").write_text(json.dumps({**old, "bundle_id": new_id}))
    _refused(fake_bundle, keys["public"], "signature does not verify")


@pytest.mark.parametrize("how", ["flip", "truncate", "not-base64", "not-json", "empty"])
def test_a_modified_signature_is_refused(fake_bundle, keys, how):
    sign_bundle(fake_bundle, keys["private"])
    path = fake_bundle / "signature.json"
    doc = json.loads(path.read_text())
    sig = bytearray(base64.b64decode(doc["signature"]))
    if how == "flip":
        sig[10] ^= 0x01
        doc["signature"] = base64.b64encode(bytes(sig)).decode()
    elif how == "truncate":
        doc["signature"] = base64.b64encode(bytes(sig[:40])).decode()
    elif how == "not-base64":
        doc["signature"] = "!!!"
    path.write_text("{not json" if how == "not-json" else "" if how == "empty" else json.dumps(doc))
    _refused(fake_bundle, keys["public"], "refusing bundle")


def test_trusting_a_private_key_or_junk_is_a_config_error(fake_bundle, keys, tmp_path):
    sign_bundle(fake_bundle, keys["private"])
    _refused(fake_bundle, keys["private"], "is a private key", exc=ConfigError)
    (tmp_path / "junk.pub").write_text("junk")
    _refused(fake_bundle, tmp_path / "junk.pub", "not an ed25519 public key", exc=ConfigError)
    _refused(fake_bundle, tmp_path / "missing.pub", "cannot read the trusted public key", exc=ConfigError)


def test_signing_with_a_bad_key_is_a_config_error(fake_bundle, keys):
    with pytest.raises(ConfigError, match="not a usable ed25519 signing key"):
        sign_bundle(fake_bundle, keys["public"])


# ------------------------------------------------------------------------- the real bundle (TF)


@pytest.mark.tf
def test_a_signed_real_bundle_loads_and_scores_with_trust(bundle_copy, keys):
    sign_bundle(bundle_copy, keys["private"])
    bundle = load_bundle(bundle_copy, trust=keys["public"])
    assert bundle.signed_by == keys["id"] and bundle.digest.startswith(bundle.bundle_id)
    import numpy as np

    assert bundle.score(np.zeros((3, bundle.window, bundle.n_features), np.float32)).shape == (3,)
    with pytest.raises(BundleError, match="not by the trusted key"):
        load_bundle(bundle_copy, trust=keys["other_public"])


@pytest.mark.tf
def test_eval_and_run_with_trust_refuse_an_unsigned_bundle_with_one_line(bundle_copy, keys, tmp_path):
    from fixtures_core import MIRAI_44_1, PCAP_HUE

    cli = [sys.executable, "-m", "edgebot.cli"]
    res = subprocess.run(cli + ["eval", str(bundle_copy), str(MIRAI_44_1), "--trust", str(keys["public"])],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "it is not signed" in res.stderr
    res = subprocess.run(cli + ["run", "--bundle", str(bundle_copy), "--pcap", str(PCAP_HUE), "--jsonl",
                                str(tmp_path / "o.jsonl"), "--trust", str(keys["public"])],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "it is not signed" in res.stderr
    sign_bundle(bundle_copy, keys["private"])
    res = subprocess.run(cli + ["eval", str(bundle_copy), str(MIRAI_44_1), "--trust", str(keys["public"]), "--json"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["flows"]
