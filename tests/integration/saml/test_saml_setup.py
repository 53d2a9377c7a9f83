"""The ``saml:`` section is validated at start with errors naming the key and the file, and the
Okta factor-only guide (docs/integrations/okta-saml-factor.md) matches the code: its YAML
validates and every ``{public_url}/...`` path it names is a route of an app built with it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from werkzeug.exceptions import MethodNotAllowed, NotFound

from posture_gateway.app import create_app
from posture_gateway.settings import ConfigError, Settings, load_settings
from tests.e2e.saml_sp import sp_metadata_xml

__all__: list[str] = []

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "integrations" / "okta-saml-factor.md"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_ENDPOINT = re.compile(r"\{public_url\}(/[A-Za-z0-9_.\-/<>]*)")


def _settings(tmp_path: Path, saml: dict[str, Any]) -> Settings:
    return Settings.model_validate({"data_dir": tmp_path / "data", "dev_mode": True, "saml": saml})


def _sp_file(tmp_path: Path, name: str, entity_id: str) -> str:
    path = tmp_path / name
    path.write_text(
        sp_metadata_xml(entity_id, "https://sp.example/acs", signing=None), encoding="utf-8"
    )
    return str(path)


def test_without_a_saml_section_the_endpoints_are_404(tmp_path: Path) -> None:
    app = create_app(Settings.model_validate({"data_dir": tmp_path / "data", "dev_mode": True}))
    client = app.test_client()
    assert client.get("/saml/metadata").status_code == 404
    assert client.get("/saml/sso").status_code == 404
    assert client.get("/saml/idp-initiated?sp=x").status_code == 404


def test_a_missing_metadata_file_names_the_entry_and_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.xml"
    with pytest.raises(ConfigError, match=r"saml\.service_providers\[0\]: .*nope\.xml"):
        create_app(_settings(tmp_path, {"service_providers": [{"metadata_file": str(missing)}]}))


def test_a_malformed_metadata_file_is_refused_at_start(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text("<!DOCTYPE x><x/>", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"saml\.service_providers\[0\]: .*bad\.xml"):
        create_app(_settings(tmp_path, {"service_providers": [{"metadata_file": str(bad)}]}))


def test_two_files_with_one_entity_id_are_refused(tmp_path: Path) -> None:
    one = _sp_file(tmp_path, "a.xml", "urn:same")
    two = _sp_file(tmp_path, "b.xml", "urn:same")
    with pytest.raises(ConfigError, match="urn:same"):
        create_app(
            _settings(
                tmp_path,
                {"service_providers": [{"metadata_file": one}, {"metadata_file": two}]},
            )
        )


def test_okta_factor_without_signed_requests_does_not_start(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {"saml": {"service_providers": [{"metadata_file": "x.xml", "okta_factor": True}]}}
        ),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"saml\.service_providers\.0.*require_signed_requests"):
        load_settings(config, environ={})


def test_an_unknown_saml_key_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"saml": {"entity": "x"}}), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"saml\.entity"):
        load_settings(config, environ={})


def test_the_okta_guide_yaml_validates_and_its_paths_are_routes(tmp_path: Path) -> None:
    text = GUIDE.read_text(encoding="utf-8")
    snippets = [yaml.safe_load(body) for lang, body in _FENCE.findall(text) if lang == "yaml"]
    assert snippets, "the guide has no YAML snippet"
    for snippet in snippets:
        Settings.model_validate(snippet)  # the metadata file itself is read at start only
    okta = _sp_file(tmp_path, "okta.xml", "https://www.okta.com/saml2/service-provider/spx")
    app = create_app(_settings(tmp_path, {"service_providers": [{"metadata_file": okta}]}))
    adapter = app.url_map.bind("posture.example.com")
    paths = _ENDPOINT.findall(text)
    assert paths
    for raw in paths:
        path = re.sub(r"<[^>]+>", "x", raw.rstrip("."))
        try:
            adapter.match(path, method="GET")
        except MethodNotAllowed:
            pass
        except NotFound:
            pytest.fail(f"{{public_url}}{raw} is not a route of the app")
    metadata = app.test_client().get("/saml/metadata")
    assert metadata.status_code == 200 and b"X509Certificate" in metadata.data
