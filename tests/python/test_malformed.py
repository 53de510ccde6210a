"""A malformed model file is a clean 400 carrying the GGUF reader's error; the server keeps running."""
import os
import struct
from pathlib import Path

from test_admin import call

ROOT = Path(__file__).resolve().parents[2]


def test_malformed_model_is_a_clean_400(server, client):
    models = Path(os.environ.get("RILL_MODELS_DIR", ROOT / "models"))
    bad = models / "rill-test-malformed.gguf"
    # Valid magic and version, then a tensor count far beyond what the file holds.
    bad.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 1 << 40, 0))
    try:
        status, body = call("POST", server["admin"] + "/admin/models", {"name": "broken", "path": bad.name})
        assert status == 400, body
        assert "tensor_count" in body["error"]["message"], body
    finally:
        bad.unlink()
    assert client.completions.create(model="smollm2", prompt="Hi", max_tokens=1).choices
