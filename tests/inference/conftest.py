"""Real inference backends on loopback for the inference tests.

The binaries and models come from ``scripts/setup-inference-backends.sh`` (run by the test
set-up): Ollama 0.5.4 on CPU serving gemma-3-270m, and llama.cpp's server (xllamacpp) serving the
same GGUF, so both backend kinds answer for the same model.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aios_inference.config import BackendConfig, InferenceLimits, InferenceSettings, ModelConfig
from tests.helpers import REPO

TOOLS = REPO / ".tools" / "inference"
GEMMA = TOOLS / "models" / "gemma-3-270m-q4_k_m.gguf"
SMOLLM2 = TOOLS / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL = "gemma3-270m"
# A second, distinct model for residency tests (Ollama's CPU build loads it fine; its text is
# garbage there, notes section 3, so no test reads what it writes).
SECOND_MODEL = "smollm2-135m"
START_DEADLINE_S = 60.0
CHAT_TEMPLATE = (
    "{{- range .Messages }}<start_of_turn>"
    '{{ if eq .Role "assistant" }}model{{ else }}user{{ end }}\n'
    "{{ .Content }}<end_of_turn>\n{{ end }}<start_of_turn>model\n"
)


@dataclass(frozen=True)
class Backend:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


def _installed() -> None:
    if not (TOOLS / "stamp").exists():
        pytest.fail(
            f"{TOOLS} is missing: run scripts/setup-inference-backends.sh (make test does)."
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def http_json(url: str, body: dict[str, Any] | None = None, timeout_s: float = 30.0) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.loads(response.read() or b"null")


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_DEADLINE_S
    while True:
        if process.poll() is not None:
            pytest.fail(f"backend exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                pytest.fail(f"{url} not ready within {START_DEADLINE_S} s")
            time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a backend and its children (Ollama's model runners) by its own process group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        kill_group(process)


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """``kill -9`` a backend started by these fixtures, with its runners."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


@contextmanager
def ollama_server(models: Path, log: Path, **environment: str) -> Iterator[Backend]:
    """A real Ollama on a free loopback port over the model store ``models``."""
    _installed()
    port = free_port()
    env = {
        **os.environ,
        "OLLAMA_HOST": f"127.0.0.1:{port}",
        "OLLAMA_MODELS": str(models),
        "OLLAMA_NUM_PARALLEL": "2",
        "OLLAMA_MAX_LOADED_MODELS": "3",
        "OLLAMA_NOHISTORY": "1",
        "HOME": str(log.parent),  # its key pair goes here, not in the user's ~/.ollama
        **environment,
    }
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(TOOLS / "ollama"), "serve"],
            env=env,
            stdout=sink,
            stderr=sink,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(f"{url}/api/version", process, log)
        yield Backend(url=url, process=process, log=log)
    finally:
        _stop(process)


@contextmanager
def llama_server(log: Path, *, parallel: int = 2) -> Iterator[Backend]:
    """llama.cpp's server on a free loopback port serving gemma-3-270m."""
    _installed()
    port = free_port()
    arguments = ["-m", str(GEMMA), "--alias", MODEL, "--host", "127.0.0.1", "--port", str(port)]
    arguments += ["-c", "2048", "--parallel", str(parallel), "--embeddings", "-t", "2"]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(TOOLS / "llama-server"), *arguments],
            stdout=sink,
            stderr=sink,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(f"{url}/health", process, log)
        # The first request after start is several times slower: warm up here, not in a test.
        http_json(
            f"{url}/v1/chat/completions",
            {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        )
        yield Backend(url=url, process=process, log=log)
    finally:
        _stop(process)


def create_models(url: str, models: Path) -> None:
    """Import gemma-3-270m (with a chat template) and SmolLM2 into an Ollama store."""
    modelfile = (
        f'FROM {GEMMA}\nTEMPLATE """{CHAT_TEMPLATE}"""\n'
        "PARAMETER stop <end_of_turn>\nPARAMETER num_ctx 2048\n"
    )
    environment = {**os.environ, "OLLAMA_HOST": url.removeprefix("http://")}
    second = f"FROM {SMOLLM2}\nPARAMETER num_ctx 512\n"
    for name, text in ((MODEL, modelfile), (SECOND_MODEL, second)):
        path = models / f"{name}.Modelfile"
        path.write_text(text, encoding="utf-8")
        subprocess.run(
            [str(TOOLS / "ollama"), "create", name, "-f", str(path)],
            env=environment,
            check=True,
            capture_output=True,
            timeout=120,
        )


@pytest.fixture(scope="session")
def ollama_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ollama-models")


@pytest.fixture(scope="session")
def ollama(ollama_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    log = tmp_path_factory.mktemp("ollama-log") / "ollama.log"
    with ollama_server(ollama_store, log) as backend:
        create_models(backend.url, ollama_store)
        http_json(
            f"{backend.url}/api/generate",
            {"model": MODEL, "prompt": "hi", "options": {"num_predict": 2}, "stream": False},
        )
        yield backend


@pytest.fixture(scope="session")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    with llama_server(tmp_path_factory.mktemp("llama-log") / "llama.log") as backend:
        yield backend


def make_settings(
    home: Path,
    ollama_url: str,
    llama_url: str | None,
    *,
    models: list[ModelConfig] | None = None,
    limits: InferenceLimits | None = None,
    **extra: Any,
) -> InferenceSettings:
    backends = extra.pop("backends", None) or (
        [BackendConfig(name="llamacpp", kind="openai", url=llama_url)] if llama_url else []
    )
    registry = models or [
        ModelConfig(
            name="gemma",
            backend="ollama",
            backend_model=MODEL,
            price_prompt_per_1k=0.5,
            price_completion_per_1k=1.5,
            size_bytes=GEMMA.stat().st_size,
        ),
        *(
            [ModelConfig(name="gemma-cpp", backend="llamacpp", backend_model=MODEL)]
            if llama_url
            else []
        ),
    ]
    return InferenceSettings(
        home=home,
        ollama_url=ollama_url,
        backends=backends,
        models=registry,
        limits=limits or InferenceLimits(),
        **extra,
    )


@pytest.fixture
def settings(tmp_path: Path, ollama: Backend, llama: Backend) -> InferenceSettings:
    return make_settings(tmp_path, ollama.url, llama.url)
