#!/usr/bin/env python3
"""Mixed-load soak of `rill serve`: does memory or the fd table grow while clients come and go?

Runs the default model behind two API keys (one rate limited) for --seconds of mixed traffic:
streamed and plain chat and completions, logprobs, JSON schemas, tools, the Responses API with
stored responses (evicted past --max-stored-responses) and chaining, Anthropic Messages, streams
dropped mid-way, malformed bodies, wrong keys, slow and idle sockets. Every 5 s it reads the
server's VmRSS, open fds and threads from /proc. Passes when, after a warm-up (which fills the
KV pool and prefix cache: their pages are touched as they are first used), the last minute's median
RSS is within --tolerance of the first steady minute's, the fewest open fds (the floor under the
sockets clients hold at that moment) grew by no more than --tolerance or one fd (a keep-alive
connection open or not at a sample: below 5 % of ~16 fds that is the resolution), the fd count
once the load stops is back to what it was before (± 1), no request got a 5xx, and every KV block
and sequence is back. Stdlib only.
"""
import argparse
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = "smollm2"
SYSTEM = "You are a terse assistant for a hardware store. Answer in one short sentence."
TOPICS = ["hammers", "paint", "ladders", "nails", "glue", "tape", "saws", "drills", "screws", "rope"]
KEY_A, KEY_B = "soak-key-a", "soak-key-b"
KEYS_TOML = f"""
[[keys]]
name = "soak-a"
key = "{KEY_A}"

[[keys]]
name = "soak-b"
key = "{KEY_B}"
requests_per_minute = 30
max_concurrent = 2
weight = 2
"""


class Tally:
    """Response codes per kind of request, shared by the workers."""

    def __init__(self):
        self.lock = threading.Lock()
        self.codes = Counter()

    def add(self, kind, code):
        with self.lock:
            self.codes[(kind, code)] += 1

    def server_errors(self):
        return sum(n for (_, code), n in self.codes.items() if isinstance(code, int) and code >= 500)


class Client:
    """One keep-alive connection; reconnects after any failure."""

    def __init__(self, port, key):
        self.port, self.key, self.conn = port, key, None

    def post(self, path, body, stream=False, drop_after=None):
        """POSTs JSON; returns (status, body bytes). drop_after: close after that many body bytes."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.key}"}
        try:
            self.conn.request("POST", path, data, headers)
            response = self.conn.getresponse()
            if drop_after is not None:
                response.read(drop_after)
                self.close()
                return response.status, b""
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as error:
            self.close()
            return type(error).__name__, b""

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def user_turn(rng):
    return f"Which {rng.choice(TOPICS)} should I buy for {rng.choice(TOPICS)}? ({rng.randrange(10**6)})"


def chat_worker(port, tally, rng, stop):
    client = Client(port, KEY_A)
    while not stop.is_set():
        body = {"model": MODEL, "max_tokens": rng.randint(8, 64), "stream": rng.random() < 0.7,
                "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user_turn(rng)}]}
        if rng.random() < 0.25:
            body.update(logprobs=True, top_logprobs=3)
        if rng.random() < 0.2:
            body.update(temperature=0.8, seed=rng.randrange(1000), presence_penalty=0.5)
        status, _ = client.post("/v1/chat/completions", body)
        tally.add("chat", status)


def completion_worker(port, tally, rng, stop):
    """The rate-limited key: some of these are 429s by design."""
    client = Client(port, KEY_B)
    while not stop.is_set():
        body = {"model": MODEL, "prompt": f"A short note about {rng.choice(TOPICS)}:", "max_tokens": rng.randint(4, 32)}
        status, _ = client.post("/v1/completions", body)
        tally.add("completion", status)
        if status == 429:
            stop.wait(1.0)


def structured_worker(port, tally, rng, stop):
    client = Client(port, KEY_A)
    schema = {"type": "object", "properties": {"item": {"type": "string", "maxLength": 20}, "count": {"type": "integer"}},
              "required": ["item", "count"], "additionalProperties": False}
    tool = {"type": "function", "function": {"name": "stock", "description": "Look up stock for an item",
                                             "parameters": {"type": "object", "properties": {"item": {"type": "string"}},
                                                            "required": ["item"]}}}
    while not stop.is_set():
        messages = [{"role": "user", "content": user_turn(rng)}]
        if rng.random() < 0.5:
            body = {"model": MODEL, "messages": messages, "max_tokens": 48,
                    "response_format": {"type": "json_schema", "json_schema": {"name": "order", "schema": schema}}}
        else:
            body = {"model": MODEL, "messages": messages, "max_tokens": 48, "tools": [tool],
                    "tool_choice": rng.choice(["auto", "required"]), "stream": rng.random() < 0.5}
        status, _ = client.post("/v1/chat/completions", body)
        tally.add("structured", status)


def agent_api_worker(port, tally, rng, stop):
    """Responses (stored, some chained) and Anthropic Messages."""
    client = Client(port, KEY_A)
    previous = None
    while not stop.is_set():
        if rng.random() < 0.6:
            body = {"model": MODEL, "input": user_turn(rng), "max_output_tokens": 24, "store": True,
                    "stream": rng.random() < 0.5}
            if previous and rng.random() < 0.5:
                body["previous_response_id"] = previous
            status, data = client.post("/v1/responses", body)
            tally.add("responses", status)
            if status == 200 and not body["stream"]:
                previous = json.loads(data)["id"]
            elif status == 400 and "previous_response_id" in body:
                previous = None  # evicted: the store is bounded
        else:
            body = {"model": MODEL, "max_tokens": 24, "system": SYSTEM, "stream": rng.random() < 0.5,
                    "messages": [{"role": "user", "content": user_turn(rng)}]}
            status, _ = client.post("/v1/messages", body)
            tally.add("messages", status)


def hostile_worker(port, tally, rng, stop):
    """Dropped streams, malformed bodies, wrong keys, slow headers and idle sockets."""
    while not stop.is_set():
        action = rng.randrange(5)
        if action == 0:
            body = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 300, "stream": True, "ignore_eos": True}
            status, _ = Client(port, KEY_A).post("/v1/completions", body, drop_after=rng.randint(1, 400))
            tally.add("dropped-stream", status)
        elif action == 1:
            junk = rng.choice([b"{", b'{"model": 5}', b'{"model": "smollm2", "messages": "x"}', bytes(rng.randrange(256) for _ in range(64))])
            status, _ = Client(port, KEY_A).post(rng.choice(["/v1/chat/completions", "/v1/completions", "/v1/responses"]), junk)
            tally.add("malformed", status)
        elif action == 2:
            status, _ = Client(port, "wrong-key").post("/v1/completions", {"model": MODEL, "prompt": "x"})
            tally.add("wrong-key", status)
        elif action == 3:
            sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]
            for s in sockets[:10]:
                s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")  # headers never finished
            stop.wait(rng.uniform(1, 4))
            for s in sockets:
                s.close()
            tally.add("idle-sockets", "closed")
        else:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
                tally.add("metrics", r.status)
        stop.wait(rng.uniform(0.2, 1.0))


def proc_sample(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.split()
    return {"rss_kib": int(fields["VmRSS"][0]), "threads": int(fields["Threads"][0]), "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def gauge(port, name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=1200)
    parser.add_argument("--warmup", type=int, default=180, help="seconds before the first steady minute")
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "rill"))
    parser.add_argument("--model-file", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    parser.add_argument("--out", default=os.path.join(ROOT, "target", "soak"))
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    assert args.seconds >= args.warmup + 120, "need a steady minute after the warm-up and a last minute after it"

    os.makedirs(args.out, exist_ok=True)
    keys = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    keys.write(KEYS_TOML)
    keys.close()
    port = free_port()
    log = open(os.path.join(args.out, "server.log"), "w")
    server = subprocess.Popen([args.binary, "serve", "--model", f"{MODEL}={args.model_file}", "--port", str(port),
                               "--admin-port", str(free_port()), "--api-keys-file", keys.name,
                               "--max-stored-responses", "32", "--header-timeout", "10", "--kv-cache-tokens", "8192"],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1)
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    sys.exit("rill serve did not start; see " + log.name)
                time.sleep(0.2)
        idle = proc_sample(server.pid)
        tally, stop, rng = Tally(), threading.Event(), random.Random(args.seed)
        workers = [chat_worker] * 3 + [completion_worker, structured_worker, agent_api_worker, hostile_worker]
        threads = [threading.Thread(target=w, args=(port, tally, random.Random(rng.random()), stop), daemon=True) for w in workers]
        for t in threads:
            t.start()
        started, samples = time.time(), []
        while time.time() - started < args.seconds:
            time.sleep(5)
            if server.poll() is not None:
                sys.exit(f"rill serve exited with {server.returncode} under load; see {log.name}")
            samples.append({"t": round(time.time() - started), **proc_sample(server.pid)})
        stop.set()
        for t in threads:
            t.join(timeout=320)
        settle = time.time() + 60
        while gauge(port, "rill_engine_kv_blocks_used") > 0 or gauge(port, "rill_engine_running_sequences") > 0:
            if time.time() > settle:
                break
            time.sleep(0.5)
        kv_blocks_after, running_after = gauge(port, "rill_engine_kv_blocks_used"), gauge(port, "rill_engine_running_sequences")
        time.sleep(args.warmup / 10)
        quiet = proc_sample(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=60)

    def window(lo, hi, field):
        values = [s[field] for s in samples if lo <= s["t"] < hi]
        return min(values) if field == "fds" else statistics.median(values)

    first, last = (args.warmup, args.warmup + 60), (args.seconds - 60, args.seconds + 1)
    growth = {field: window(*last, field) / window(*first, field) - 1 for field in ("rss_kib", "fds")}
    minutes = [{"minute": m + 1, **{f: window(m * 60, (m + 1) * 60, f) for f in ("rss_kib", "fds", "threads")}}
               for m in range(args.seconds // 60)]
    summary = {"seconds": args.seconds, "idle_before": idle, "quiet_after": quiet, "growth": growth, "minutes": minutes,
               "codes": {f"{kind} {code}": n for (kind, code), n in sorted(tally.codes.items(), key=str)},
               "server_errors": tally.server_errors(), "kv_blocks_after": kv_blocks_after, "running_after": running_after}
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump({**summary, "samples": samples}, f, indent=1)
    print("minute  rss_MiB  fds(min)  threads")
    for m in minutes:
        print(f"{m['minute']:>6}  {m['rss_kib'] / 1024:7.1f}  {m['fds']:>8}  {m['threads']:>7}")
    print("requests:", ", ".join(f"{k}: {n}" for k, n in summary["codes"].items()))
    print(f"growth first steady minute -> last minute: RSS {growth['rss_kib']:+.2%}, fds {growth['fds']:+.2%}; "
          f"idle before {idle}, quiet after {quiet}; 5xx {summary['server_errors']}; "
          f"KV blocks after {kv_blocks_after:.0f}, running after {running_after:.0f}")
    first_fds, last_fds = window(*first, "fds"), window(*last, "fds")
    failures = [f"RSS grew {growth['rss_kib']:+.2%}"] if growth["rss_kib"] > args.tolerance else []
    failures += [f"the fd floor grew from {first_fds} to {last_fds}"] if last_fds > max(first_fds * (1 + args.tolerance), first_fds + 1) else []
    failures += [f"{quiet['fds']} fds open after the load, {idle['fds']} before"] if quiet["fds"] > idle["fds"] + 1 else []
    failures += [f"{summary['server_errors']} responses were 5xx"] if summary["server_errors"] else []
    failures += ["KV blocks or sequences were not returned"] if kv_blocks_after or running_after else []
    if failures:
        sys.exit("soak failed: " + "; ".join(failures))
    print("soak passed")


if __name__ == "__main__":
    main()
