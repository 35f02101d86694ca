"""The TLS and token configuration keys: parsing, relative paths and contradictions."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from server import config as config_module
from server.config import ConfigError

CONFIGS = Path(__file__).resolve().parent.parent / "server" / "configs"
MODEL = {"name": "m", "path": "/m.gguf", "weight": 1.0}


def _load(**keys: object) -> config_module.Config:
    return config_module.from_mapping({"models": [MODEL], **keys}, base_dir=Path("/etc/quorum"))


def test_defaults_need_tls():
    security = _load().security
    assert security.insecure is False
    assert security.tls_cert_file == ""


def test_relative_paths_resolved():
    security = _load(tls_cert_file="tls/node.crt", tls_key_file="/keys/node.key").security
    assert security.tls_cert_file == "/etc/quorum/tls/node.crt"
    assert security.tls_key_file == "/keys/node.key"


def test_configmap_strings_parsed():
    security = _load(
        tls_cert_file="a.crt", tls_key_file="a.key", tls_ca_file="ca.crt", tls_client_auth="true"
    ).security
    assert security.tls_client_auth is True


@pytest.mark.parametrize(
    ("keys", "fragment"),
    [
        ({"tls_cert_file": "a.crt"}, "tls_cert_file and tls_key_file must be set together"),
        ({"tls_key_file": "a.key"}, "tls_cert_file and tls_key_file must be set together"),
        ({"insecure": True, "tls_ca_file": "ca.crt"}, "insecure: true turns TLS off but tls_ca"),
        ({"insecure": True, "tls_client_auth": True}, "but tls_client_auth is set"),
        (
            {"tls_cert_file": "a.crt", "tls_key_file": "a.key", "tls_client_auth": True},
            "tls_client_auth: true needs tls_ca_file",
        ),
        ({"insecure": "sometimes"}, "insecure must be true or false"),
    ],
)
def test_contradictions_rejected(keys, fragment):
    with pytest.raises(ConfigError) as raised:
        _load(**keys)
    assert fragment in str(raised.value)


def test_security_not_in_fingerprint():
    plain = _load(insecure=True).fingerprint()
    tls = _load(tls_cert_file="a.crt", tls_key_file="a.key").fingerprint()
    assert plain == tls


def test_local_config_plaintext_on_loopback():
    config = config_module.load(CONFIGS / "local.yaml")
    assert config.security.insecure is True
    assert config.coordinator_listen.startswith("127.0.0.1:")


def test_reference_config_mutual_tls():
    security = config_module.load(CONFIGS / "reference.yaml").security
    assert security.tls_client_auth is True
    assert security.auth_token_file == "/etc/quorum-token/tokens"


@pytest.mark.parametrize("overlay", ["local", "reference"])
def test_k3s_configmap_security_keys(tmp_path, overlay):
    overlays = CONFIGS.parent.parent / "deploy" / "k3s" / "overlays"
    manifest = overlays / overlay / "configmap.yaml"
    for key, value in yaml.safe_load(manifest.read_text())["data"].items():
        (tmp_path / key).write_text(value)
    security = config_module.load(tmp_path).security
    assert security.tls_ca_file == "/etc/quorum-tls/ca.crt"
    assert security.tls_client_auth is True
    assert security.insecure is False
