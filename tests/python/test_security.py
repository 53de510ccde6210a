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


def test_a_keep_alive_client_refused_before_its_body_is_read_gets_a_clean_next_request(tmp_path):
    # A 429 (or 401) is answered before the body is read, so that connection cannot be reused:
    # the answer says `Connection: close`, and the client's next request opens a new one instead
    # of failing with a broken pipe.
    import http.client
    import json

    keys = tmp_path / "keys.toml"
    keys.write_text('[[keys]]\nname = "slow"\nkey = "sk-slow"\nrequests_per_minute = 1\n')
    s = start_server("--api-keys-file", str(keys))
    try:
        host, port = s["url"].removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        small = json.dumps({"model": M, "prompt": "Hi", "max_tokens": 1})
        large = json.dumps({"model": M, "prompt": "hi " * 3000, "max_tokens": 1})  # never read: refused first
        statuses = []
        for key, body in (("sk-slow", small), ("sk-slow", large), ("sk-wrong", large), ("sk-slow", large)):
            conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
            resp = conn.getresponse()
            resp.read()
            statuses.append(resp.status)
            if resp.status != 200:
                assert resp.getheader("connection") == "close"
        assert statuses == [200, 429, 401, 429]
    finally:
        s["proc"].terminate()
        s["proc"].wait(timeout=15)


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


def _closed_within(sock, seconds):
    """Whether the server closes `sock` (without answering) within `seconds`."""
    sock.settimeout(seconds)
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True
    except (TimeoutError, OSError):
        return False


def test_slow_silent_and_idle_connections_are_closed_and_connections_are_capped():
    import socket

    s = start_server("--header-timeout", "2", "--max-connections", "3")
    host, port = s["url"].removeprefix("http://").split(":")
    time.sleep(0.5)  # the readiness probe's connection is let go
    try:
        slowloris = socket.create_connection((host, int(port)))
        slowloris.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        silent = socket.create_connection((host, int(port)))
        idle = socket.create_connection((host, int(port)))
        idle.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.recv(4096).startswith(b"HTTP/1.1 200")
        # Three open: a fourth is closed at once, unanswered.
        fourth = socket.create_connection((host, int(port)))
        fourth.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _closed_within(fourth, 1.5)
        for sock in (slowloris, silent, idle):
            assert _closed_within(sock, 5), "a slow, silent or idle connection outlived the header timeout"
        # Their places are free again.
        client = OpenAI(base_url=s["url"] + "/v1", api_key="unused", max_retries=0)
        assert client.models.list().data
    finally:
        s["proc"].terminate()
        s["proc"].wait(timeout=15)


def test_tls_through_the_sdk_and_plain_http_on_the_tls_port_is_refused(tmp_path):
    import ssl
    import urllib.request

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    s = start_server("--tls-cert", str(cert), "--tls-key", str(key), ready_url_scheme="https", cafile=str(cert))
    try:
        url = s["url"]
        assert url.startswith("https://")
        client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0,
                        http_client=openai.DefaultHttpxClient(verify=ssl.create_default_context(cafile=str(cert))))
        r = client.chat.completions.create(model=M, messages=[{"role": "user", "content": "Hi"}], max_tokens=3)
        assert r.choices[0].message.content is not None
        with pytest.raises(Exception):
            urllib.request.urlopen(url.replace("https://", "http://") + "/health", timeout=5)
    finally:
        s["proc"].terminate()
        s["proc"].wait(timeout=15)


def _gauge(url, name):
    import urllib.request

    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{")]
    return sum(values)


def test_idle_connections_and_a_disconnect_storm_leave_the_server_responsive_with_every_kv_block_back():
    import socket
    import urllib.request

    s = start_server()
    host, port = s["url"].removeprefix("http://").split(":")
    idle = []
    try:
        # 1,000 connections that send nothing.
        for _ in range(1000):
            idle.append(socket.create_connection((host, int(port))))
        client = OpenAI(base_url=s["url"] + "/v1", api_key="unused", max_retries=0, timeout=60)
        started = time.time()
        assert client.completions.create(model=M, prompt="Hello", max_tokens=4).choices
        assert time.time() - started < 30
        # 200 streams dropped after their first bytes.
        def drop_one(_):
            body = b'{"model": "%s", "prompt": "Once upon a time", "max_tokens": 400, "stream": true, "ignore_eos": true}' % M.encode()
            c = socket.create_connection((host, int(port)))
            c.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                      % (len(body), body))
            c.settimeout(60)
            c.recv(64)
            c.close()
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(drop_one, range(200)))
        deadline = time.time() + 30
        while _gauge(s["url"], "rill_engine_kv_blocks_used") > 0 or _gauge(s["url"], "rill_engine_running_sequences") > 0:
            assert time.time() < deadline, "KV blocks or sequences outlived their clients"
            time.sleep(0.2)
        assert client.completions.create(model=M, prompt="Hello", max_tokens=4).choices
        assert urllib.request.urlopen(s["url"] + "/ready", timeout=10).status == 200
    finally:
        for c in idle:
            c.close()
        s["proc"].terminate()
        s["proc"].wait(timeout=15)
