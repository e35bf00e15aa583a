"""The OpenAI surface beyond generation, as third-party clients use it: model names (a readable default, the path
accepted, models.retrieve), CORS for browsers (vLLM's --allowed-origins), 405 with Allow."""
import json

import openai
import pytest

from server_util import MODEL, Server


@pytest.fixture(scope="module")
def default_names():
    # No --served-model-name: the model's file name is its id (as llama-server), the path as given is accepted too.
    s = Server("--max-model-len", "512", served_name=None)
    yield s
    assert s.stop() == 0, s.read_log()


def test_default_model_name_is_readable_and_the_path_works(default_names):
    c = openai.OpenAI(base_url=default_names.base_url + "/v1", api_key="x", max_retries=0)
    ids = [m.id for m in c.models.list().data]
    assert ids == [MODEL.name], ids
    m = c.models.retrieve(MODEL.name)
    assert m.id == MODEL.name and m.object == "model"
    for name in (MODEL.name, str(MODEL)):
        r = c.completions.create(model=name, prompt="Hello", max_tokens=2)
        assert r.usage.completion_tokens == 2
    assert c.models.retrieve(str(MODEL)).id == str(MODEL)
    with pytest.raises(openai.NotFoundError):
        c.models.retrieve("no-such-model")
    with pytest.raises(openai.NotFoundError):
        c.completions.create(model="no-such-model", prompt="x", max_tokens=1)


def test_cors_default_allows_any_origin_and_answers_preflights(default_names):
    code, headers, _ = default_names.request(
        "OPTIONS", "/v1/chat/completions",
        headers={"Origin": "http://app.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type, authorization"})
    assert code == 200
    assert headers["access-control-allow-origin"] == "*"
    assert headers["access-control-allow-methods"] == "POST"
    assert headers["access-control-allow-headers"] == "content-type, authorization"
    code, headers, _ = default_names.request("POST", "/v1/completions", {"prompt": "x", "max_tokens": 1},
                                             headers={"Origin": "http://app.example"})
    assert code == 200 and headers["access-control-allow-origin"] == "*"
    code, headers, _ = default_names.request("GET", "/v1/models")
    assert "access-control-allow-origin" not in headers  # no Origin, no CORS headers


def test_cors_restricted_origins_and_wrong_methods():
    s = Server("--allowed-origins", '["http://good.example"]', "--api-key", "k", tiny=True)
    try:
        pre = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
        code, headers, _ = s.request("OPTIONS", "/v1/completions", headers={"Origin": "http://good.example", **pre})
        assert code == 200 and headers["access-control-allow-origin"] == "http://good.example"
        assert headers["vary"] == "Origin"  # the answer depends on the Origin: caches must know
        code, headers, data = s.request("OPTIONS", "/v1/completions", headers={"Origin": "http://evil.example", **pre})
        assert code == 400 and "access-control-allow-origin" not in headers, data
        # The key is still needed on the real request; the refusal carries the CORS header so the page can read it.
        code, headers, data = s.request("POST", "/v1/completions", {"prompt": "x", "max_tokens": 1},
                                        headers={"Origin": "http://good.example"})
        assert code == 401 and headers["access-control-allow-origin"] == "http://good.example"
        code, headers, data = s.request("GET", "/v1/chat/completions", headers={"Authorization": "Bearer k"})
        assert code == 405 and headers["allow"] == "POST" and json.loads(data)["error"]["message"]
        code, headers, _ = s.request("PUT", "/v1/models", headers={"Authorization": "Bearer k"})
        assert code == 405 and headers["allow"] == "GET, HEAD"
    finally:
        assert s.stop() == 0, s.read_log()
