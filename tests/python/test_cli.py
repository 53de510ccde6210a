"""Command-line manners: JSON logs for log shippers, and help with examples."""
import json
import os
import subprocess

from conftest import ROOT, free_port

BINARY = os.environ.get("RILL_BIN", str(ROOT / "target" / "release" / "rill"))
MODEL = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_log_format_json_writes_one_json_object_per_line():
    proc = subprocess.Popen([BINARY, "--log-format", "json", "serve", "--model", f"smollm2={MODEL}", "--port", str(free_port()),
                             "--admin-port", str(free_port()), "--kv-cache-tokens", "2048", "--data-dir", "/tmp/rill-cli-test"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, "RILL_LOG": "info"})
    try:
        loaded = None
        for line in proc.stderr:
            if line.startswith("{"):
                event = json.loads(line)
                assert {"timestamp", "level", "fields"} <= event.keys(), event
                if event["fields"].get("message") == "model loaded":
                    loaded = event
                    break
        assert loaded and loaded["level"] == "INFO" and loaded["fields"]["model"] == "smollm2", loaded
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_help_shows_examples():
    out = subprocess.run([BINARY, "--help"], capture_output=True, text=True, check=True).stdout
    assert "Examples:" in out and "rill serve --model" in out and "--log-format" in out
