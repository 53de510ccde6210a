"""Starts `rill serve` on the default model on a free loopback port for the SDK tests."""
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from openai import OpenAI

ROOT = Path(__file__).resolve().parents[2]
MODEL_NAME = "smollm2"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(*extra_args, drain_timeout="5", ready_url_scheme="http", cafile=None):
    """`rill serve` on the default model with these extra flags, once /ready answers."""
    import ssl

    context = ssl.create_default_context(cafile=cafile) if cafile else None
    binary = os.environ.get("RILL_BIN", str(ROOT / "target" / "release" / "rill"))
    models = Path(os.environ.get("RILL_MODELS_DIR", ROOT / "models"))
    port, admin_port = free_port(), free_port()
    proc = subprocess.Popen(
        [binary, "serve", "--model", f"{MODEL_NAME}={models / 'SmolLM2-135M-Instruct.Q4_1.gguf'}",
         "--port", str(port), "--admin-port", str(admin_port), "--models-root", str(models),
         "--kv-cache-tokens", "16384", "--drain-timeout", drain_timeout, *extra_args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        # stderr is read only when the server fails to start: keep it to errors so an unread pipe
        # never fills (the default filter also logs warnings and rill's progress).
        env={**os.environ, "RILL_LOG": os.environ.get("RILL_LOG", "error")})
    url = f"{ready_url_scheme}://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/ready", timeout=1, context=context)
            break
        except Exception:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError("rill serve did not start: " + proc.stderr.read().decode())
            time.sleep(0.2)
    return {"url": url, "admin": f"{ready_url_scheme}://127.0.0.1:{admin_port}", "pid": proc.pid, "proc": proc}


@pytest.fixture(scope="session")
def server():
    s = start_server()
    yield s
    s["proc"].terminate()
    s["proc"].wait(timeout=10)


@pytest.fixture(scope="session")
def base_url(server):
    return server["url"]


@pytest.fixture()
def client(base_url):
    return OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0, timeout=120)
