"""`openk2 serve` under abuse and at its edges: malformed traffic beside valid load, disconnects, limits,
authentication, the endpoints beside chat, weight updates and SIGTERM.
"""

import asyncio
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from openk2.llm import SamplingParams, chat_request
from openk2.llm.k2_engine import K2Engine
from openk2.serve.app import create_app
from openk2.serve.background import BackgroundServer
from tests.llm.checkpoints import scripted_tokenizer, write_untrained_checkpoint

QUESTION = {"role": "user", "content": "What is the weather in Paris?"}
IM_END_ID = scripted_tokenizer().token_to_id("<|im_end|>")

MALFORMED: list[tuple[bytes | dict, int, str | None]] = [
    ({"seed": 2**64}, 400, "seed"),
    ({"temperature": "0.5"}, 400, "temperature"),
    ({"n": 1.5}, 400, "n"),
    ({"messages": [{"role": "user"}]}, 400, "messages[0].content"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, 400, "messages[0].role"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "objekt"}}}]}, 400,
     "tools[0].function.parameters.type"),
    ({"frequency_penalty": 3}, 400, "frequency_penalty"),
    ({"functions": []}, 400, "functions"),
    ({"model": "gpt-4o"}, 404, "model"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "\\ud800"}]}', 400, None),
    (b"{not json", 400, None),
    (b"[]", 400, None),
]  # fmt: skip


def _body(served, override: bytes | dict) -> bytes:
    if isinstance(override, bytes):
        return override
    return json.dumps(
        {"model": served.engine.model_name, "messages": [QUESTION], "max_tokens": 8, **override}
    ).encode()


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_malformed_requests_beside_64_valid_ones_get_4xx_naming_the_field(random_model):
    served = random_model
    url = f"{served.server.base_url}/chat/completions"
    valid = _body(served, {"max_tokens": 16, "temperature": 1.0})
    rss_before = _rss_mb()

    async def traffic() -> tuple[list[httpx.Response], list[httpx.Response]]:
        async with httpx.AsyncClient(timeout=120) as client:
            post = lambda body: client.post(url, content=body, headers={"content-type": "application/json"})  # noqa: E731
            good = [post(valid) for _ in range(64)]
            bad = [post(_body(served, override)) for override, _, _ in MALFORMED * 2]
            results = await asyncio.gather(*good, *bad)
            return list(results[:64]), list(results[64:])

    good, bad = asyncio.run(traffic())
    assert [response.status_code for response in good] == [200] * 64
    for response, (_, status, param) in zip(bad, MALFORMED * 2, strict=True):
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["param"] == param
        if param is not None:
            assert error["message"].startswith(f"{param}: ")
        assert "Traceback" not in response.text and 'File "' not in response.text
    assert httpx.get(f"{served.server.base_url.removesuffix('/v1')}/health").json()["status"] == "ok"
    assert _rss_mb() - rss_before < 500  # bounded: nothing kept per request


def test_a_20_mb_body_is_refused_with_413_before_it_is_read(random_model):
    base = random_model.server.base_url
    body = _body(random_model, {"messages": [{"role": "user", "content": "x" * 20_000_000}]})
    started = time.perf_counter()
    response = httpx.post(
        f"{base}/chat/completions", content=body, headers={"content-type": "application/json"}, timeout=60
    )
    print(f"20 MB body answered in {1000 * (time.perf_counter() - started):.0f} ms")
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"

    def chunked():  # no Content-Length: the limit counts the bytes as they arrive
        for _ in range(20):
            yield b"x" * 1_000_000

    streamed = httpx.post(
        f"{base}/chat/completions",
        content=chunked(),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert streamed.status_code == 413


def test_a_prompt_beyond_the_context_is_refused_before_it_queues(random_model):
    """10,000 messages: refused with both numbers before tokenisation; the queue never sees it."""
    messages = [{"role": "user", "content": f"message {i} " * 3} for i in range(10_000)]
    with pytest.raises(openai.BadRequestError) as raised:
        random_model.client(max_retries=0).chat.completions.create(
            model=random_model.engine.model_name, messages=messages
        )
    message = raised.value.body["message"]
    assert raised.value.body["param"] == "messages"
    assert "tokens; the model's context is 1024" in message
    assert random_model.engine.scheduler.waiting == 0


def test_a_disconnected_client_stops_its_generation_within_a_few_steps(random_model):
    served = random_model
    scheduler = served.engine.scheduler
    body = _body(served, {"max_tokens": 900, "temperature": 0, "logit_bias": {str(IM_END_ID): -100}})
    cancelled = scheduler.stats.cancelled
    with socket.create_connection((served.server.host, served.server.port)) as connection:
        request = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        connection.sendall(request)
        while scheduler.stats.generated_tokens == 0 or not scheduler.running:
            time.sleep(0.001)
        time.sleep(0.05)  # it is decoding
    left_at = scheduler.stats.steps
    while scheduler.running:
        time.sleep(0.001)
    print(f"decoding steps after the client left: {scheduler.stats.steps - left_at}")
    assert scheduler.stats.cancelled == cancelled + 1
    assert scheduler.stats.steps - left_at <= 3


def test_endpoints_beside_chat(random_model):
    served = random_model
    base = served.server.base_url.removesuffix("/v1")
    name = served.engine.model_name
    assert httpx.get(f"{base}/v1/models/{name}").json()["id"] == name
    assert httpx.get(f"{base}/v1/models/nope").status_code == 404
    assert httpx.get(f"{base}/version").json()["version"]
    tokens = httpx.post(f"{base}/tokenize", json={"model": name, "prompt": "Sunny, 18C."}).json()
    assert tokens["count"] == len(tokens["tokens"]) and tokens["max_model_len"] == 1024
    assert httpx.post(f"{base}/detokenize", json={"model": name, "tokens": tokens["tokens"]}).json() == {
        "prompt": "Sunny, 18C."
    }
    chat = httpx.post(f"{base}/tokenize", json={"model": name, "messages": [QUESTION]}).json()
    assert chat["tokens"] == served.engine.prompt_ids(chat_request([QUESTION]))
    served.client().chat.completions.create(model=name, messages=[QUESTION], max_tokens=4)
    metrics = httpx.get(f"{base}/metrics").text
    for family in (
        "openk2:requests_total", "openk2:generation_tokens_total", "openk2:num_requests_waiting",
        "openk2:time_to_first_token_seconds_bucket", "openk2:inter_token_latency_seconds_bucket",
    ):  # fmt: skip
        assert family in metrics
    assert 'openk2:requests_total{route="/v1/chat/completions",status="200"}' in metrics


def test_api_key_guards_everything_but_health_version_and_metrics(tmp_path):
    engine = K2Engine.from_checkpoint(write_untrained_checkpoint(tmp_path))
    try:
        with BackgroundServer(create_app(engine, api_key="sesame")) as server:
            base = server.base_url
            with pytest.raises(openai.AuthenticationError):
                openai.OpenAI(base_url=base, api_key="wrong", max_retries=0).models.list()
            assert [m.id for m in openai.OpenAI(base_url=base, api_key="sesame").models.list()] == [
                engine.model_name
            ]
            assert httpx.get(f"{base.removesuffix('/v1')}/health").status_code == 200
            assert httpx.post(f"{base.removesuffix('/v1')}/tokenize", json={"prompt": "x"}).status_code == 401
    finally:
        engine.close()


def test_update_weights_from_disk_loads_between_batches(tmp_path):
    engine = K2Engine.from_checkpoint(write_untrained_checkpoint(tmp_path / "old", seed=4))
    new = write_untrained_checkpoint(tmp_path / "new", seed=5)
    reference = K2Engine.from_checkpoint(new)
    greedy = SamplingParams(temperature=0, max_tokens=6)
    try:
        with BackgroundServer(create_app(engine)) as server:
            base = server.base_url.removesuffix("/v1")
            client = openai.OpenAI(base_url=server.base_url, api_key="EMPTY")
            ask = {"model": engine.model_name, "messages": [QUESTION], "max_tokens": 6, "temperature": 0}
            before = client.chat.completions.create(**ask).choices[0].message.content
            missing = {"model_path": str(tmp_path / "missing")}
            bad = httpx.post(f"{base}/update_weights_from_disk", json=missing, timeout=60)
            assert bad.status_code == 400 and bad.json()["success"] is False
            update = httpx.post(f"{base}/update_weights_from_disk", json={"model_path": str(new)}, timeout=60)
            assert update.json()["success"] is True
            after = client.chat.completions.create(**ask).choices[0].message.content
        expected = reference.chat([QUESTION], sampling=greedy).message.content
        assert after == expected != before
    finally:
        engine.close()
        reference.close()


def test_sigterm_drains_within_the_drain_timeout(tmp_path):
    """`openk2 serve` in its own process: a long request is running; SIGTERM ends the process in bounded time."""
    checkpoint = write_untrained_checkpoint(tmp_path / "model")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [str(Path(sys.executable).parent / "openk2"), "serve", "--checkpoint", str(checkpoint), "--port", str(port),
               "--drain-timeout", "1", "--threads", "1"]  # fmt: skip
    server = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        body = {"model": checkpoint.name, "messages": [QUESTION], "max_tokens": 900, "stream": True,
                "logit_bias": {str(IM_END_ID): -100}}  # fmt: skip
        with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=60) as response:
            next(response.iter_lines())  # generating
            server.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            assert server.wait(timeout=30) is not None
        print(f"exited {time.monotonic() - signalled:.1f} s after SIGTERM")
    finally:
        if server.poll() is None:
            server.kill()
