"""Optional ed25519 signatures of bundles: key generation, signing the bundle id, verifying against a trusted key.

A signature signs the bundle id (the sha256 of the manifest's canonical content, which lists
every file's sha256; see :mod:`edgebot.manifest`), so it covers the whole bundle. It lives in
``signature.json`` inside the bundle, beside the manifest (the manifest cannot list it)::

    {"algorithm": "ed25519", "bundle_id": "<64 hex>", "key_id": "<16 hex>",
     "signature": "<base64 of 64 bytes>", "signature_version": 1}

The signed message is ``b"edgebot-bundle-signature-v1\\n" + bundle_id`` (ASCII). The key id is
the first 16 hex digits of the sha256 of the raw 32-byte public key. Keys are PEM files:
``edgebot keygen --out KEY`` writes the private key ``KEY`` (PKCS#8, mode 0600) and the public key
``KEY.pub`` (SubjectPublicKeyInfo); only the ``.pub`` goes to the gateways.

The ``cryptography`` package (in the ``edge`` and ``train`` extras) is imported only here, only
when a key is made, a bundle signed or a signature verified.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from edgebot.errors import BundleError, ConfigError, RuntimeMissingError
from edgebot.manifest import MANIFEST, SIGNATURE_FILE, parse_manifest_bytes
from edgebot.statefiles import FILE_MODE, atomic_write

log = logging.getLogger(__name__)

ALGORITHM = "ed25519"
SIGNATURE_VERSION = 1
DOMAIN = b"edgebot-bundle-signature-v1\n"
_MAX_KEY_BYTES = 16 * 1024
_MAX_SIGNATURE_BYTES = 16 * 1024


def _ed25519() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise RuntimeMissingError("signing and --trust need the cryptography package: "
                                  "pip install cryptography (it is in the edge and train extras)") from None
    return ed25519


def _serialization() -> Any:
    _ed25519()
    from cryptography.hazmat.primitives import serialization

    return serialization


def _raw_public(public_key: Any) -> bytes:
    s = _serialization()
    return public_key.public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)


def key_id(public_key: Any) -> str:
    """First 16 hex digits of the sha256 of the raw public key."""
    return hashlib.sha256(_raw_public(public_key)).hexdigest()[:16]


def _read_key_file(path: str | os.PathLike[str], what: str) -> bytes:
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(_MAX_KEY_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None
    if len(data) > _MAX_KEY_BYTES:
        raise ConfigError(f"{path} is too large to be an ed25519 {what}")
    return data


def generate_key(out: str | os.PathLike[str], *, force: bool = False) -> tuple[Path, Path, str]:
    """Make an ed25519 key pair: ``out`` (private, PKCS#8 PEM, 0600) and ``out.pub``.

    Returns
    -------
    (private_path, public_path, key_id)

    Raises
    ------
    ConfigError
        ``out`` or ``out.pub`` exists (without ``force``) or cannot be written.
    """
    ed25519 = _ed25519()
    s = _serialization()
    private_path = Path(out)
    public_path = private_path.with_name(private_path.name + ".pub")
    for path in (private_path, public_path):
        if path.exists() and not force:
            raise ConfigError(f"{path} already exists: pass --force to replace it, or choose another --out")
        if path.is_dir():
            raise ConfigError(f"{path} is a directory; give a file path for the key")
    key = ed25519.Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption())
    public_pem = key.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo)
    try:
        private_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # keys/ on a fresh checkout
        atomic_write(private_path, private_pem, mode=FILE_MODE)
        atomic_write(public_path, public_pem, mode=0o644)
    except OSError as exc:
        raise ConfigError(f"cannot write the key to {private_path}: {exc.strerror or exc}") from None
    return private_path, public_path, key_id(key.public_key())


def load_private_key(path: str | os.PathLike[str]) -> Any:
    """An ed25519 private key from a PEM file (``edgebot keygen``).

    Raises
    ------
    ConfigError
        Unreadable, not PEM, encrypted, or another key type.
    """
    ed25519 = _ed25519()
    s = _serialization()
    data = _read_key_file(path, "signing key")
    try:
        key = s.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        reason = "it is encrypted" if "password" in str(exc).lower() else "not a PEM private key"
        raise ConfigError(f"{path} is not a usable ed25519 signing key ({reason}): make one with `edgebot keygen`") from None
    except Exception as exc:  # cryptography raises its own UnsupportedAlgorithm for exotic keys
        raise ConfigError(f"{path} is not a usable ed25519 signing key ({exc.__class__.__name__}): "
                          "make one with `edgebot keygen`") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError(f"{path} is a {type(key).__name__}, not an ed25519 key: make one with `edgebot keygen`")
    return key


def load_public_key(path: str | os.PathLike[str]) -> Any:
    """An ed25519 public key from a PEM file (``KEY.pub`` of ``edgebot keygen``).

    Raises
    ------
    ConfigError
        Unreadable, not PEM, or another key type (e.g. the private key was given).
    """
    ed25519 = _ed25519()
    s = _serialization()
    data = _read_key_file(path, "trusted public key")
    if b"PRIVATE KEY" in data:
        raise ConfigError(f"{path} is a private key: give the gateway the .pub file, keep the private key "
                          "on the machine that converts")
    try:
        key = s.load_pem_public_key(data)
    except Exception as exc:  # ValueError for bad PEM, UnsupportedAlgorithm for exotic keys
        raise ConfigError(f"{path} is not an ed25519 public key ({exc.__class__.__name__}): "
                          "give the .pub file `edgebot keygen` wrote") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ConfigError(f"{path} is a {type(key).__name__}, not an ed25519 public key")
    return key


def public_key_id(path: str | os.PathLike[str]) -> str:
    """Key id of the public key in ``path``."""
    return key_id(load_public_key(path))


def sign_bundle(bundle_dir: str | os.PathLike[str], key: Any) -> dict[str, Any]:
    """Sign a bundle's id and write ``signature.json`` into it (replacing any earlier one).

    Parameters
    ----------
    bundle_dir
        A bundle whose manifest is intact.
    key
        An ed25519 private key, or the path of one.

    Returns
    -------
    dict
        The content of ``signature.json``.
    """
    if not hasattr(key, "sign"):
        key = load_private_key(key)
    bundle_dir = Path(bundle_dir)
    try:
        raw = (bundle_dir / MANIFEST).read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read {bundle_dir / MANIFEST}: {exc.strerror}") from None
    bundle_id = parse_manifest_bytes(raw, str(bundle_dir / MANIFEST))["bundle_id"]
    signature = key.sign(DOMAIN + bundle_id.encode("ascii"))
    doc = {"algorithm": ALGORITHM, "bundle_id": bundle_id, "key_id": key_id(key.public_key()),
           "signature": base64.b64encode(signature).decode("ascii"), "signature_version": SIGNATURE_VERSION}
    atomic_write(bundle_dir / SIGNATURE_FILE, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("ascii"),
                 mode=0o644)
    log.info("signed bundle %s with key %s", bundle_id[:12], doc["key_id"])
    return doc


def verify_bundle_signature(bundle_dir: str | os.PathLike[str], bundle_id: str,
                            trusted: str | os.PathLike[str]) -> str:
    """Check that ``signature.json`` is a valid signature of ``bundle_id`` by the trusted key.

    Returns
    -------
    str
        The key id of the trusted key.

    Raises
    ------
    BundleError
        No signature, another key, a signature of another manifest, or one that does not verify.
    ConfigError
        ``trusted`` is not an ed25519 public key.
    """
    public_key = load_public_key(trusted)
    trusted_id = key_id(public_key)
    path = Path(bundle_dir) / SIGNATURE_FILE
    refuse = f"refusing bundle {Path(bundle_dir)}"
    if not path.is_file():
        raise BundleError(f"{refuse}: it is not signed, and key {trusted_id} is required (--trust): "
                          f"reconvert with `edgebot convert --sign KEY`")
    try:
        with open(path, "rb") as fh:
            raw = fh.read(_MAX_SIGNATURE_BYTES + 1)
        doc = json.loads(raw.decode("utf-8")) if len(raw) <= _MAX_SIGNATURE_BYTES else None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        doc = None
    fields = ("algorithm", "bundle_id", "key_id", "signature")
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), str) for k in fields):
        raise BundleError(f"{refuse}: {SIGNATURE_FILE} is unreadable or incomplete: sign the bundle again")
    if doc["algorithm"] != ALGORITHM:
        raise BundleError(f"{refuse}: {SIGNATURE_FILE} uses algorithm {doc['algorithm'][:20]!r}, not {ALGORITHM}")
    if doc["key_id"] != trusted_id:
        raise BundleError(f"{refuse}: signed by key {doc['key_id'][:16]!r}, not by the trusted key {trusted_id}")
    if doc["bundle_id"] != bundle_id:
        raise BundleError(f"{refuse}: the signature is for another manifest (bundle {doc['bundle_id'][:12]!r}, "
                          f"this one is {bundle_id[:12]}): sign the bundle again")
    try:
        signature = base64.b64decode(doc["signature"], validate=True)
    except ValueError:
        signature = b""
    from cryptography.exceptions import InvalidSignature

    try:
        public_key.verify(signature, DOMAIN + bundle_id.encode("ascii"))
    except InvalidSignature:
        raise BundleError(f"{refuse}: its signature does not verify with the trusted key {trusted_id} "
                          "(tampered or corrupted)") from None
    return trusted_id
