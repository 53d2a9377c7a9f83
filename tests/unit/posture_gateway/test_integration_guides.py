"""The set-up guides (docs/integrations/{keycloak,okta,entra}.md) match the code.

What a guide names must exist: every ``posture ...`` command line is a real command path of
the CLI with real options (and its ``--help`` works); every ``{public_url}/...`` path is a route
of an app built as the guides configure it; every endpoint a guide tells an admin to enter is
the discovery document's value; every claim in a claim table is in ``claims_supported`` of the
discovery document the guide is about; every YAML snippet validates (``Settings`` or, for
``clients:`` snippets, the clients file loader).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner
from flask import Flask
from werkzeug.exceptions import MethodNotAllowed, NotFound

from posture_gateway.app import create_app
from posture_gateway.cli.main import cli
from posture_gateway.oidc.clients import load_clients
from posture_gateway.settings import Settings, merge_layers

DOCS = Path(__file__).resolve().parents[3] / "docs" / "integrations"
GUIDES = ("keycloak.md", "okta.md", "entra.md")
PUBLIC_URL = "https://posture.example.com"  # the guides' example public_url

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_INLINE = re.compile(r"`([^`\n]+)`")
_ENDPOINT = re.compile(r"\{public_url\}(/[A-Za-z0-9_.\-/<>]*)")
_TABLE_ROW = re.compile(r"^\|(.+)\|\s*$", re.M)

# Guide table labels an admin copies into an IdP -> the discovery document key it must equal.
_DISCOVERY_FIELDS = {
    "Authorization URL": "authorization_endpoint",
    "Authorization endpoint": "authorization_endpoint",
    "Token URL": "token_endpoint",
    "Token endpoint": "token_endpoint",
    "User Info URL": "userinfo_endpoint",
    "Userinfo endpoint": "userinfo_endpoint",
    "JWKS endpoint": "jwks_uri",
    "Logout URL": "end_session_endpoint",
    "Issuer": "issuer",
}


def _text(guide: str) -> str:
    return (DOCS / guide).read_text(encoding="utf-8")


def _blocks(text: str, *langs: str) -> list[str]:
    return [body for lang, body in _FENCE.findall(text) if lang in langs]


def _prose(text: str) -> str:
    return _FENCE.sub("", text)


def _commands(text: str) -> list[str]:
    found = [
        line.split("#", 1)[0].strip()
        for block in _blocks(text, "sh", "bash", "")
        for line in block.splitlines()
        if line.strip().startswith("posture ")
    ]
    found += [span for span in _INLINE.findall(_prose(text)) if span.startswith("posture ")]
    return found


def _yaml_snippets(text: str) -> list[dict[str, Any]]:
    out = []
    for body in _blocks(text, "yaml", "yml"):
        data = yaml.safe_load(body)
        assert isinstance(data, dict), f"a YAML snippet is not a mapping:\n{body}"
        out.append(data)
    return out


def _tables(text: str) -> list[list[list[str]]]:
    """Markdown tables of the prose: rows of cells, header first, separator dropped."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in _prose(text).splitlines() + [""]:
        match = _TABLE_ROW.match(line)
        if match:
            cells = [c.strip() for c in match.group(1).split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def _guide_app(tmp: Path) -> Flask:
    """An app configured as the guides say: their settings merged, their clients registered."""
    settings: dict[str, Any] = {}
    clients: list[Any] = []
    for guide in GUIDES:
        for snippet in _yaml_snippets(_text(guide)):
            if "clients" in snippet:
                clients += snippet["clients"]
            else:
                settings = merge_layers(settings, snippet)
    clients_file = tmp / "clients.yaml"
    clients_file.write_text(yaml.safe_dump({"clients": clients}), encoding="utf-8")
    oidc = dict(settings.get("oidc", {}), clients_file=str(clients_file))
    oidc.pop("users_file", None)  # the guides' users file is theirs; no local users here
    settings.update(oidc=oidc, dev_mode=True, data_dir=str(tmp / "data"))
    return create_app(Settings.model_validate(settings))


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    return _guide_app(tmp_path_factory.mktemp("guides"))


def _discovery(app: Flask, guide: str) -> dict[str, Any]:
    path = "/entra/eam/.well-known/openid-configuration" if guide == "entra.md" else ""
    response = app.test_client().get(path or "/.well-known/openid-configuration")
    assert response.status_code == 200
    document: dict[str, Any] = response.get_json()
    return document


def _command_problem(line: str) -> str | None:
    """Why ``line`` is not a real ``posture`` command line, or None when it is."""
    cmd: click.Command = cli
    path: list[str] = []
    for token in line.split()[1:]:
        if token.startswith("-"):
            names = {opt for p in cmd.params for opt in getattr(p, "opts", [])}
            if token not in names:
                return f"{token} is not an option of {path}"
        elif isinstance(cmd, click.Group):
            if token not in cmd.commands:
                return f"{token!r} is not a sub-command of {path}"
            cmd = cmd.commands[token]
            path.append(token)
    if not path or isinstance(cmd, click.Group):
        return f"{path} is a group, not a command"
    result = CliRunner().invoke(cli, [*path, "--help"])
    return None if result.exit_code == 0 else f"--help failed: {result.output}"


@pytest.mark.parametrize("guide", GUIDES)
def test_every_command_line_is_a_real_command(guide: str) -> None:
    commands = _commands(_text(guide))
    assert commands, f"{guide} names no posture command (the extractor found nothing)"
    problems = {line: _command_problem(line) for line in commands}
    assert not {k: v for k, v in problems.items() if v}, f"{guide}: {problems}"


@pytest.mark.parametrize(
    "line",
    [
        "posture clients hash-secret",  # the command the clients.py docstring used to name
        "posture users link U --issuer okta --tenant x",  # an invented option
        "posture users",  # a group, not a command
        "posture audit",  # no such command
    ],
)
def test_an_invented_command_line_is_caught(line: str) -> None:
    assert _command_problem(line) is not None


@pytest.mark.parametrize("guide", GUIDES)
def test_every_endpoint_path_is_a_route(app: Flask, guide: str) -> None:
    paths = _ENDPOINT.findall(_text(guide))
    assert paths, f"{guide} names no {{public_url}} endpoint"
    adapter = app.url_map.bind("posture.example.com")
    # An issuer is an identifier, not a route (the EAM's is {public_url}/entra/eam).
    issuers = {_discovery(app, g)["issuer"] for g in GUIDES}
    for raw in paths:
        path = raw.rstrip(".")
        if PUBLIC_URL + path in issuers:
            continue
        path = re.sub(r"<[^>]+>", "x", path)
        try:
            adapter.match(path, method="GET")
        except MethodNotAllowed:
            pass  # a POST-only route (the Okta hook, the EAM completion)
        except NotFound:
            pytest.fail(f"{guide}: {{public_url}}{raw} is not a route of the app")


@pytest.mark.parametrize("guide", GUIDES)
def test_endpoints_to_enter_are_the_discovery_values(app: Flask, guide: str) -> None:
    document = _discovery(app, guide)
    public_url = PUBLIC_URL
    checked = 0
    for table in _tables(_text(guide)):
        for row in table[1:]:
            key = _DISCOVERY_FIELDS.get(row[0])
            values = _INLINE.findall(row[1]) if key and len(row) > 1 else []
            if key is None or not values or "{public_url}" not in values[0]:
                continue
            assert values[0].replace("{public_url}", public_url) == document[key], (
                f"{guide}: {row[0]} = {values[0]} but discovery says {document[key]}"
            )
            checked += 1
    if guide != "entra.md":  # Entra reads our discovery document itself
        assert checked >= 4, f"{guide}: expected the endpoint table to be checked"


@pytest.mark.parametrize("guide", GUIDES)
def test_every_claim_in_a_claim_table_is_supported(app: Flask, guide: str) -> None:
    supported = set(_discovery(app, guide)["claims_supported"])
    named: set[str] = set()
    for table in _tables(_text(guide)):
        if table[0][0].lower() != "claim":
            continue
        for row in table[1:]:
            named.update(_INLINE.findall(row[0]))
    if guide != "okta.md":
        assert named, f"{guide}: no claim table found"
    assert named <= supported, f"{guide}: not in claims_supported: {sorted(named - supported)}"


@pytest.mark.parametrize("guide", GUIDES)
def test_every_yaml_snippet_validates(guide: str, tmp_path: Path) -> None:
    snippets = _yaml_snippets(_text(guide))
    assert snippets, f"{guide} has no YAML snippet"
    for i, snippet in enumerate(snippets):
        if "clients" in snippet:
            path = tmp_path / f"clients-{i}.yaml"
            path.write_text(yaml.safe_dump(snippet), encoding="utf-8")
            assert len(load_clients(path)) == len(snippet["clients"])
        else:
            Settings.model_validate(snippet)
