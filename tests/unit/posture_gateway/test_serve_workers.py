"""What ``posture serve`` hands to the server's workers, and the defaults a deployment ships
with (issue 7, finding 2).

``posture --config FILE serve`` validated FILE in the CLI process and then exec'd the WSGI
server, whose workers built the app from the environment alone: without ``POSTURE_CONFIG``
they did not see FILE and failed to start. Every way of passing a configuration must reach
every worker. (The real servers run in tests/e2e/test_deployment.py.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mdm_core.agent.loopback import DEFAULT_PORT
from posture_gateway.cli import serve as cli_serve
from posture_gateway.cli.agent import serve_loopback_cmd
from posture_gateway.cli.main import cli
from posture_gateway.oidc.settings import OIDCSettings
from posture_gateway.settings import load_settings

__all__: list[str] = []

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def exec_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record the exec of the WSGI server instead of replacing the test process."""
    calls: list[dict[str, Any]] = []

    def execve(path: str, argv: list[str], env: dict[str, str]) -> None:
        # a real exec never returns; recorded, the command simply ends (exit code 0)
        calls.append({"path": path, "argv": argv, "env": dict(env)})

    def execv(path: str, argv: list[str]) -> None:
        execve(path, argv, dict(os.environ))

    monkeypatch.setattr(os, "execve", execve)
    monkeypatch.setattr(os, "execv", execv)
    for key in [k for k in os.environ if k.startswith("POSTURE_")]:
        monkeypatch.delenv(key)
    return calls


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "conf" / "posture.yaml"
    config.parent.mkdir()
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        "dev_mode: true\n"
        "public_url: http://127.0.0.1:8123\n"
        f"policy_dir: {ROOT / 'policies'}\n",
        encoding="utf-8",
    )
    return config


def _serve(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> Any:
    runner = CliRunner()
    old = Path.cwd()
    os.chdir(cwd)
    try:
        return runner.invoke(cli, args, env=env, catch_exceptions=True)
    finally:
        os.chdir(old)


@pytest.mark.parametrize("server", ["granian", "gunicorn"])
def test_the_config_file_given_with_dash_dash_config_reaches_the_workers(
    tmp_path: Path, exec_calls: list[dict[str, Any]], server: str
) -> None:
    config = _config(tmp_path)
    # A relative path, as typed at a shell: the workers must get it whatever their cwd.
    result = _serve(["--config", "conf/posture.yaml", "serve", "--server", server], tmp_path)
    assert result.exit_code == 0 and result.exception is None, result.output
    assert "with " + server + " (2 workers)" in result.output
    (call,) = exec_calls
    passed = call["env"].get("POSTURE_CONFIG")
    assert passed is not None and Path(passed).is_absolute()
    assert Path(passed).resolve() == config.resolve()
    # What a worker builds from the environment it is handed is the same configuration.
    worker = load_settings(environ=call["env"])
    assert worker.data_dir == tmp_path / "data" and worker.dev_mode is True
    assert worker.public_url == "http://127.0.0.1:8123"


def test_posture_config_and_posture_env_reach_the_workers(
    tmp_path: Path, exec_calls: list[dict[str, Any]]
) -> None:
    config = _config(tmp_path)
    env = {"POSTURE_CONFIG": "conf/posture.yaml", "POSTURE_OIDC__AGENT_PORT": "49001"}
    result = _serve(["serve", "--workers", "1"], tmp_path, env=env)
    assert result.exit_code == 0 and result.exception is None, result.output
    assert "(1 worker)" in result.output
    (call,) = exec_calls
    assert Path(call["env"]["POSTURE_CONFIG"]).resolve() == config.resolve()
    worker = load_settings(environ=call["env"])
    assert worker.oidc.agent_port == 49001 and worker.dev_mode is True


def test_the_server_argv_runs_the_app_factory_with_the_workers_asked(
    exec_calls: list[dict[str, Any]],
) -> None:
    granian = cli_serve._argv("granian", "127.0.0.1", 8000, 3, 4)
    assert granian[granian.index("--workers") + 1] == "3"
    assert "--factory" in granian and "posture_gateway.app:create_app" in granian
    gunicorn = cli_serve._argv("gunicorn", "127.0.0.1", 8000, 3, 4)
    assert gunicorn[gunicorn.index("--workers") + 1] == "3"
    assert gunicorn[-1] == "posture_gateway.app:create_app()"


def test_the_agents_loopback_port_is_the_one_the_login_page_asks() -> None:
    """With both defaults, the login page's script reaches the helper."""
    port_option = next(p for p in serve_loopback_cmd.params if p.name == "port")
    assert port_option.default == OIDCSettings().agent_port == DEFAULT_PORT
