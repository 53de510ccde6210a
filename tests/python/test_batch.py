"""OpenAI's Batch API through the official SDK: files up, a batch of hundreds of lines run at batch
priority, results down; and a batch that survives `kill -9` and a restart without losing or
repeating a line."""
import json
import os
import signal
import time

from openai import OpenAI

from conftest import MODEL_NAME as M, start_server


def client_for(s):
    return OpenAI(base_url=s["url"] + "/v1", api_key="unused", max_retries=0, timeout=60)


def upload(client, lines):
    data = "\n".join(json.dumps(line) for line in lines).encode()
    return client.files.create(file=("input.jsonl", data), purpose="batch")


def chat_line(i, model=M):
    return {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": f"Count to {i}"}], "max_tokens": 3, "temperature": 0}}


def wait_for(client, batch_id, statuses, deadline_s=300, until=None):
    deadline = time.time() + deadline_s
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in statuses or (until and until(batch)):
            return batch
        assert time.time() < deadline, f"batch still {batch.status}: {batch.request_counts}"
        time.sleep(0.2)


def result_ids(client, file_id):
    if not file_id:
        return []
    return [json.loads(line)["custom_id"] for line in client.files.content(file_id).text.splitlines()]


def test_a_batch_of_hundreds_of_lines_completes_through_the_sdk(tmp_path):
    s = start_server("--data-dir", str(tmp_path))
    try:
        client = client_for(s)
        lines = [chat_line(i) for i in range(300)] + [chat_line(300, model="no-such-model")]
        f = upload(client, lines)
        assert f.purpose == "batch" and f.bytes > 0
        assert client.files.retrieve(f.id).filename == "input.jsonl"
        batch = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h", metadata={"job": "nightly"})
        assert batch.status in ("validating", "in_progress") and batch.metadata == {"job": "nightly"}
        # Interactive requests are answered while the batch runs.
        r = client.chat.completions.create(model=M, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
        assert r.choices[0].message.content is not None
        batch = wait_for(client, batch.id, {"completed", "failed"})
        assert batch.status == "completed", batch
        assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (301, 300, 1)
        out = [json.loads(line) for line in client.files.content(batch.output_file_id).text.splitlines()]
        assert sorted(o["custom_id"] for o in out) == sorted(f"req-{i}" for i in range(300))
        assert all(o["response"]["status_code"] == 200 and o["response"]["body"]["object"] == "chat.completion" for o in out)
        errors = [json.loads(line) for line in client.files.content(batch.error_file_id).text.splitlines()]
        assert [(e["custom_id"], e["response"]["status_code"]) for e in errors] == [("req-300", 404)]
        assert batch.id in [b.id for b in client.batches.list()]
        assert batch.output_file_id in [x.id for x in client.files.list(purpose="batch_output")]
        # A malformed input fails validation with its line numbers.
        bad = client.files.create(file=("bad.jsonl", b'{"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {}}\nnope\n'), purpose="batch")
        failed = wait_for(client, client.batches.create(input_file_id=bad.id, endpoint="/v1/chat/completions", completion_window="24h").id, {"failed", "completed"})
        assert failed.status == "failed" and [e.line for e in failed.errors.data] == [1, 2]
        # The other endpoints: completions and Responses lines.
        for endpoint, body, kind in [("/v1/completions", {"model": M, "prompt": "Hello", "max_tokens": 3}, "text_completion"),
                                     ("/v1/responses", {"model": M, "input": "Hello", "max_output_tokens": 3}, "response")]:
            lines = [{"custom_id": f"{kind}-{i}", "method": "POST", "url": endpoint, "body": body} for i in range(3)]
            done = wait_for(client, client.batches.create(input_file_id=upload(client, lines).id, endpoint=endpoint, completion_window="24h").id, {"completed", "failed"})
            out = [json.loads(line) for line in client.files.content(done.output_file_id).text.splitlines()]
            assert [o["response"]["body"]["object"] for o in out] == [kind] * 3, out
        assert client.files.delete(f.id).deleted
    finally:
        s["proc"].terminate()
        s["proc"].wait(timeout=30)


def test_a_batch_survives_kill_9_and_resumes_without_losing_or_repeating_a_line(tmp_path):
    n = 200
    s = start_server("--data-dir", str(tmp_path))
    client = client_for(s)
    batch = client.batches.create(input_file_id=upload(client, [chat_line(i) for i in range(n)]).id, endpoint="/v1/chat/completions", completion_window="24h")
    before = wait_for(client, batch.id, {"completed"}, until=lambda b: b.request_counts.completed >= 40)
    assert before.status == "in_progress", "the batch finished before it could be killed"
    os.kill(s["pid"], signal.SIGKILL)
    s["proc"].wait(timeout=10)

    s = start_server("--data-dir", str(tmp_path))
    try:
        client = client_for(s)
        after = wait_for(client, batch.id, {"completed", "failed"})
        assert after.status == "completed", after
        ids = result_ids(client, after.output_file_id) + result_ids(client, after.error_file_id)
        assert len(ids) == n and sorted(set(ids)) == sorted(f"req-{i}" for i in range(n)), f"{len(ids)} results, {len(set(ids))} distinct"
        assert (after.request_counts.completed, after.request_counts.failed) == (n, 0)
    finally:
        s["proc"].terminate()
        s["proc"].wait(timeout=30)


def test_files_and_batches_belong_to_the_key_that_made_them(tmp_path):
    import openai
    import pytest

    s = start_server("--data-dir", str(tmp_path), "--api-key", "sk-alice", "--api-key", "sk-bob")
    try:
        alice = OpenAI(base_url=s["url"] + "/v1", api_key="sk-alice", max_retries=0, timeout=60)
        bob = OpenAI(base_url=s["url"] + "/v1", api_key="sk-bob", max_retries=0, timeout=60)
        f = upload(alice, [chat_line(i) for i in range(2)])
        batch = alice.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
        done = wait_for(alice, batch.id, {"completed", "failed"})
        assert done.status == "completed" and done.request_counts.completed == 2
        for call in (lambda: bob.files.retrieve(f.id), lambda: bob.files.content(f.id), lambda: bob.files.content(done.output_file_id),
                     lambda: bob.batches.retrieve(batch.id), lambda: bob.batches.cancel(batch.id)):
            with pytest.raises(openai.NotFoundError):
                call()
        assert bob.files.list().data == [] and bob.batches.list().data == []
        with pytest.raises(openai.BadRequestError):
            bob.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
        assert {x.id for x in alice.files.list()} == {f.id, done.output_file_id}
    finally:
        s["proc"].terminate()
        s["proc"].wait(timeout=30)
