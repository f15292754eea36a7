from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from concierge import __version__
from concierge.cli import app
from concierge.core import ConfigError
from concierge.factory import build_limits, build_model, build_store
from concierge.runtime.sessions import InMemorySessionStore
from concierge.settings import load_settings

runner = CliRunner()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in list(__import__("os").environ):
        if name.startswith("CONCIERGE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_are_offline():
    settings = load_settings()
    assert settings.model.provider == "embedded"
    assert settings.sessions.url.startswith("sqlite+aiosqlite:///")


def test_file_then_environment(tmp_path: Path, monkeypatch):
    config = tmp_path / "concierge.toml"
    config.write_text('[model]\nprovider = "openai"\nname = "m"\nbase_url = "http://127.0.0.1:9/v1"\n'
                      '[limits]\nmax_steps = 5\n[sessions]\nurl = "memory"\n')
    monkeypatch.setenv("CONCIERGE_LIMITS__MAX_STEPS", "3")
    settings = load_settings()  # ./concierge.toml is picked up by default
    assert settings.model.name == "m" and settings.limits.max_steps == 3
    assert build_limits(settings).max_steps == 3
    assert isinstance(build_store(settings), InMemorySessionStore)
    assert build_model(settings).name == "m"


@pytest.mark.parametrize(("env", "value", "fragment"), [
    ("CONCIERGE_MODEL__PROVIDER", "gpt", "'model.provider'"),
    ("CONCIERGE_LIMITS__MAX_STEPS", "0", "'limits.max_steps'"),
    ("CONCIERGE_LIMITS__TIMEOUT_S", "soon", "'limits.timeout_s'"),
])
def test_bad_values_name_the_key(monkeypatch, env, value, fragment):
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=fragment):
        load_settings()


def test_unknown_key_in_file_is_an_error(tmp_path: Path):
    config = tmp_path / "c.toml"
    config.write_text("[model]\nprovder = 'openai'\n")
    with pytest.raises(ConfigError, match="model.provder"):
        load_settings(config)


def test_missing_model_name_for_remote_provider(monkeypatch):
    monkeypatch.setenv("CONCIERGE_MODEL__PROVIDER", "openai")
    with pytest.raises(ConfigError, match="model.name is required"):
        build_model(load_settings())


def test_cli_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_cli_bad_config_is_one_clear_line_and_exit_2(monkeypatch):
    monkeypatch.setenv("CONCIERGE_MODEL__PROVIDER", "gpt")
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 2
    assert "invalid setting 'model.provider'" in result.output and "'embedded', 'openai' or 'anthropic'" in result.output


def test_cli_missing_config_file():
    result = runner.invoke(app, ["demo", "--config", "nope.toml"])
    assert result.exit_code == 2 and "does not exist" in result.output
