"""The openai backend's per-request path (issue 18, a client that holds its ratio when CPU is short): a request body
and a reply are encoded and read once each, by json's C encoder and scanner without json.dumps' and json.loads'
layers, to the same bytes and values (or the same errors) as those give. Servers: benchmarks/stub_server.py in
process."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from schola.backends import openai
from schola.backends.openai import OpenAIClient
from schola.types import CallInfo

_spec = importlib.util.spec_from_file_location(
    "stub_server", Path(__file__).parents[2] / "benchmarks" / "stub_server.py"
)
assert _spec and _spec.loader
stub_server = sys.modules.get("stub_server") or importlib.util.module_from_spec(_spec)
if "stub_server" not in sys.modules:
    sys.modules["stub_server"] = stub_server
    _spec.loader.exec_module(stub_server)


@pytest.fixture
async def stub() -> AsyncIterator[tuple[str, Any]]:
    server = stub_server.StubServer(delay_ms=1.0)
    url = await server.start()
    yield url, server
    await server.stop()


async def test_a_request_is_written_and_its_reply_read_without_json_dumps_or_loads(
    stub: tuple[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, server = stub
    client = OpenAIClient({"model": "stub", "base_url": url, "extra": {"temperature": 0.25, "user": "élève ☃"}})
    calls = {"dumps": 0, "loads": 0}
    dumps, loads = json.dumps, json.loads

    def counted(name: str, real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls[name] += sys._getframe(1).f_globals["__name__"] == "schola.backends.openai"  # (not the stub's)
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(json, "dumps", counted("dumps", dumps))
    monkeypatch.setattr(json, "loads", counted("loads", loads))
    messages = [{"role": "user", "content": 'What is "2 + 2"?\n\u00e9\ud83d\ude00'}]
    done, cached = await client.reply(messages, {}, CallInfo(role="student", seed=3, sample=1))
    await client.close()
    assert (done.text, done.prompt_tokens, done.completion_tokens, cached) == ("An answer.", 12, 3, False)
    assert calls == {"dumps": 0, "loads": 0}
    body = {"model": "stub", "messages": messages, "max_tokens": 512, "seed": 3 * 1_000_003 + 1,
            "temperature": 0.25, "user": "élève ☃"}  # fmt: skip
    assert server.last_body == dumps(body).encode()  # the bytes json.dumps gives (ASCII, its separators)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"choices": [{"message": {"content": "An answer."}}], "usage": {"prompt_tokens": 1}}',
        b'{"a": 1}\n',  # what many servers end with
        b'  {"a": [1.5, -2e400, NaN, 123456789012345678901234567890]}',
        '\ufeff{"a": "b"}'.encode(),  # a UTF-8 BOM
        '{"a": "\u00e9"}'.encode("utf-16"),  # json.loads reads UTF-16 and UTF-32 bytes too
        b'{"a": "\\ud800 \\u00e9 \\n"}',  # a lone surrogate escaped, as broken servers send it
        '{"a": "é☃"}'.encode(),
        b'{"a": 1} {"b": 2}',  # extra data
        '{"a": 1}\u00a0'.encode(),  # whitespace to str.isspace, extra data to JSON (only space, tab, CR and LF)
        b'{"a": 1}\x0b\x0c',
        b'{"a": 1',  # cut short
        b"not json",
        b"",
        b"\xff\xfe\x00",  # not UTF-8
        b"[]",
        b'"text"',
        b"12",
    ],
)
def test_a_reply_is_read_as_json_loads_reads_it(raw: bytes) -> None:
    try:
        expected: Any = json.loads(raw)
    except ValueError as e:
        with pytest.raises(type(e)):
            openai.loads(raw)
        return
    got = openai.loads(raw)
    assert json.dumps(got) == json.dumps(expected) and type(got) is type(expected)


@pytest.mark.parametrize("raw", [b'{"a": 1}', b'{"a": 1}\n', b'{"a": 1}\r\n  ', b"[1, 2]\n"])
def test_a_reply_ending_in_whitespace_takes_the_fast_path(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reply ending in a newline (as many servers send it) went through the scanner and then json.loads again."""
    from schola import encoding

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("json.loads called")

    monkeypatch.setattr(encoding.json, "loads", refused)
    assert openai.loads(raw) == json.JSONDecoder().decode(raw.decode())
