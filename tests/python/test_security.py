"""Keys, the admin listener's rules and draining on SIGTERM, on the `rill serve` binary."""
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import openai
import pytest
from openai import OpenAI

from conftest import MODEL_NAME as M, ROOT, start_server


def test_a_key_is_required_and_the_sdk_sends_it():
    s = start_server("--api-key", "sk-test-1", "--api-key", "sk-test-2")
    try:
        for key in ("sk-test-1", "sk-test-2"):
            ok = OpenAI(base_url=s["url"] + "/v1", api_key=key, max_retries=0)
            assert ok.chat.completions.create(model=M, messages=[{"role": "user", "content": "Hi"}], max_tokens=2).choices
        bad = OpenAI(base_url=s["url"] + "/v1", api_key="sk-wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as err:
            bad.models.list()
        assert err.value.status_code == 401 and "sk-wrong" not in str(err.value.body)
    finally:
        s["proc"].terminate()
        s["proc"].wait(timeout=15)
    assert "sk-test" not in s["proc"].stderr.read().decode(), "keys must never be logged"


def test_the_admin_api_refuses_a_public_address_without_a_key():
    binary = os.environ.get("RILL_BIN", str(ROOT / "target" / "release" / "rill"))
    models = Path(os.environ.get("RILL_MODELS_DIR", ROOT / "models"))
    r = subprocess.run([binary, "serve", "--model", str(models / "SmolLM2-135M-Instruct.Q4_1.gguf"), "--port", "0",
                        "--admin-host", "0.0.0.0"], capture_output=True, timeout=120)
    assert r.returncode != 0 and b"--admin-api-key" in r.stderr, r.stderr


def _stream(url, out, max_tokens):
    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
    finish = None
    try:
        for chunk in client.completions.create(model=M, prompt="Once upon a time", max_tokens=max_tokens, stream=True,
                                               extra_body={"ignore_eos": True}):
            for c in chunk.choices:
                finish = c.finish_reason or finish
        out.append(finish)
    except Exception as e:  # noqa: BLE001 - recorded for the assertion
        out.append(repr(e))


@pytest.mark.parametrize("drain_timeout, max_tokens, expected", [("30", 60, "length"), ("1", 4000, "abort")])
def test_sigterm_finishes_streams_in_flight_then_exits_0(drain_timeout, max_tokens, expected):
    s = start_server(drain_timeout=drain_timeout)
    results = []
    threads = [threading.Thread(target=_stream, args=(s["url"], results, max_tokens)) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    s["proc"].send_signal(signal.SIGTERM)
    for t in threads:
        t.join(timeout=60)
    assert s["proc"].wait(timeout=60) == 0
    # Within the drain timeout every stream finishes; past it each ends with an abort finish.
    assert results == [expected] * 3, results
