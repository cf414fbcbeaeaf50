"""The retrieval server, end to end: a real uvicorn process on loopback, real clients, no mocks.

One server (factbook, bm25s) serves the whole module; the last test kills it mid-rollout and
restarts it on the same port.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from agents.rollout import EpisodeResult, run_episodes
from agents.scripted import make_policy
from searchenv.resources import shared_retriever, shared_task
from searchenv.retrieval import Hit, Retriever, load_retriever
from searchenv.retrieval.remote import (
    RemoteRequestError,
    RemoteRetriever,
    RemoteUnavailableError,
)
from searchenv.server.batching import MicroBatcher
from searchenv.server.launch import ServerProcess, free_port
from tasks.records import Corpus, Passage, Task

STARTUP_DEADLINE_S = 60.0  # loads the task and the cached index: ~5 s, more on busy shared cores
N_CLIENTS, QUERIES_PER_CLIENT = 32, 200
N_EPISODES = 40


def request(
    port: int, method: str, path: str, body: Any = None, *, raw: bytes | None = None
) -> tuple[int, Any]:
    """One request (JSON ``body`` or ``raw`` bytes) on a new connection: ``(status, JSON answer)``."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        connection.request(method, path, data, {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("server") / "server.log"
    started = ServerProcess("factbook", "bm25s", extra_args=["--top-k-max", "50"], log=log)
    started.launch()
    shared_retriever(shared_task("factbook").corpus, "bm25s")  # load ours while the server starts
    started.wait_ready(STARTUP_DEADLINE_S)
    yield started
    started.stop()


@pytest.fixture(scope="module")
def task() -> Task:
    return shared_task("factbook")


@pytest.fixture(scope="module")
def local(task: Task) -> Retriever:
    return shared_retriever(task.corpus, "bm25s")


def as_pairs(hits: Sequence[Hit]) -> list[tuple[str, float]]:
    return [(hit.doc_id, hit.score) for hit in hits]


# ------------------------------------------------------------------------------- protocol


def test_retrieve_speaks_search_r1(server: ServerProcess, task: Task, local: Retriever) -> None:
    queries = ["capital of Chad", "national anthem of Algeria", "highest point Nepal", "", "the of"]
    status, answer = request(
        server.port, "POST", "/retrieve", {"queries": queries, "topk": 5, "return_scores": True}
    )
    assert status == 200 and set(answer) == {"result"} and len(answer["result"]) == len(queries)
    for query, row, expected in zip(queries, answer["result"], local.search_batch(queries, 5)):
        assert [(item["document"]["id"], item["score"]) for item in row] == as_pairs(expected), query
        assert len(row) <= 5
        scores = [item["score"] for item in row]
        assert scores == sorted(scores, reverse=True)
        for item in row:
            assert set(item) == {"document", "score"} and set(item["document"]) == {"id", "contents"}
            passage = task.corpus[item["document"]["id"]]
            # Search-R1's client: the first line is the title, the rest the text.
            contents = item["document"]["contents"]
            assert contents.split("\n")[0] == f'"{passage.title}"'
            assert "\n".join(contents.split("\n")[1:]) == passage.text
    assert answer["result"][3] == [] and answer["result"][4] == []  # empty and all-stopword queries

    status, bare = request(server.port, "POST", "/retrieve", {"queries": queries[:2], "topk": 2})
    assert status == 200
    assert bare["result"] == [[item["document"] for item in row[:2]] for row in answer["result"][:2]]

    for default in ({"queries": ["capital of Chad"]}, {"queries": ["capital of Chad"], "topk": None}):
        assert (
            len(request(server.port, "POST", "/retrieve", default)[1]["result"][0]) == 3
        )  # Search-R1's --topk
    assert request(server.port, "POST", "/retrieve", {"queries": []}) == (200, {"result": []})
    # A lone surrogate (JSON's "\ud800") is searched as it is in-process, not refused.
    raw = b'{"queries": ["capital \\ud800 of Chad"], "topk": 2, "return_scores": true}'
    row = request(server.port, "POST", "/retrieve", raw=raw)[1]["result"][0]
    assert [(item["document"]["id"], item["score"]) for item in row] == as_pairs(
        local.search("capital \ud800 of Chad", 2)
    )


def test_read_and_health(server: ServerProcess, task: Task, local: Retriever) -> None:
    ids = list(task.corpus.doc_ids[:3])
    status, answer = request(server.port, "POST", "/read", {"ids": ids})
    assert status == 200
    assert [(doc["id"], doc["title"], doc["text"]) for doc in answer["result"]] == [
        (doc_id, task.corpus[doc_id].title, task.corpus[doc_id].text) for doc_id in ids
    ]
    status, health = request(server.port, "GET", "/health")
    assert status == 200
    assert (health["task"], health["backend"], health["corpus_size"]) == (
        "factbook",
        "bm25s",
        len(task.corpus),
    )
    assert health["corpus_fingerprint"] == task.corpus.fingerprint()
    assert health["index_digest"] == local.load_info.meta["digest"]  # type: ignore[attr-defined]
    assert health["limits"]["top_k_max"] == 50


BAD_REQUESTS: dict[str, tuple[str, bytes, int, str]] = {
    "missing-queries": ("/retrieve", b"{}", 422, "queries"),
    "queries-not-a-list": ("/retrieve", b'{"queries": "capital of Chad"}', 422, "queries"),
    "queries-not-strings": ("/retrieve", b'{"queries": [1, 2]}', 422, "queries"),
    "topk-a-string": ("/retrieve", b'{"queries": ["a"], "topk": "3"}', 422, "topk"),
    "topk-zero": ("/retrieve", b'{"queries": ["a"], "topk": 0}', 422, "topk"),
    "topk-over-limit": ("/retrieve", b'{"queries": ["a"], "topk": 51}', 422, "topk"),
    "topk-a-bool": ("/retrieve", b'{"queries": ["a"], "topk": true}', 422, "topk"),
    "return-scores-a-string": (
        "/retrieve",
        b'{"queries": ["a"], "return_scores": "yes"}',
        422,
        "return_scores",
    ),
    "too-many-queries": ("/retrieve", json.dumps({"queries": ["a"] * 1025}).encode(), 422, "queries"),
    "not-utf8": ("/retrieve", b"\xff\xfe{}", 400, "body"),
    "broken-json": ("/retrieve", b'{"queries": [', 400, "body"),
    "not-an-object": ("/retrieve", b"[]", 422, "body"),
    "oversized-body": ("/retrieve", b'{"queries": ["' + b"a" * (1 << 20) + b'"]}', 413, "body"),
    "unknown-doc-ids": ("/read", b'{"ids": ["no/such/doc", "cd/government/000"]}', 404, "ids"),
    "missing-ids": ("/read", b'{"doc_ids": []}', 422, "ids"),
}


@pytest.mark.parametrize(
    ("path", "raw", "status", "field"), list(BAD_REQUESTS.values()), ids=list(BAD_REQUESTS)
)
def test_bad_requests_get_a_4xx_and_the_server_keeps_serving(
    server: ServerProcess, path: str, raw: bytes, status: int, field: str
) -> None:
    got, answer = request(server.port, "POST", path, raw=raw)
    assert (got, answer["field"]) == (status, field), answer
    assert field in answer["detail"] or field == "body", answer["detail"]
    assert request(server.port, "POST", "/retrieve", {"queries": ["capital of Chad"]})[0] == 200


def test_oversized_chunked_body_is_refused(server: ServerProcess) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        chunks = (b"x" * 65536 for _ in range(20))  # no Content-Length: only the running total can stop it
        conn.request("POST", "/retrieve", chunks, {"Content-Type": "application/json"}, encode_chunked=True)
        response = conn.getresponse()
        assert response.status == 413 and json.loads(response.read())["field"] == "body"
    finally:
        conn.close()
    assert request(server.port, "POST", "/retrieve", {"queries": ["capital of Chad"]})[0] == 200


# ------------------------------------------------------------------------------- clients


def test_remote_backend_checks_the_corpus_and_the_url(server: ServerProcess) -> None:
    other = Corpus([Passage("x/0", "Elsewhere", "a corpus the server does not serve")])
    with pytest.raises(RemoteRequestError, match=r"serves task 'factbook' \(7813 passages.*has 1 passages"):
        load_retriever(other, server.url)
    dead = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(RemoteUnavailableError, match="searchenv serve") as caught:
        RemoteRetriever(dead, other)
    assert time.monotonic() - started < 5 and dead in str(caught.value) and "3 times" in str(caught.value)


def test_32_concurrent_clients_get_the_in_process_results(
    server: ServerProcess, task: Task, local: Retriever
) -> None:
    texts = [q.question for split in ("train", "dev", "test") for q in task.questions(split)]
    suffixes = ("", " population", " capital", " currency")  # distinct queries past the question count
    n = N_CLIENTS * QUERIES_PER_CLIENT
    queries = [texts[i % len(texts)] + suffixes[i // len(texts) % len(suffixes)] for i in range(n)]
    expected = [as_pairs(hits) for hits in local.search_batch(queries, 5)]
    remote = RemoteRetriever(server.url, task.corpus)  # one client object: a kept connection per thread
    before = request(server.port, "GET", "/health")[1]["batching"]

    def client(index: int) -> list[list[tuple[str, float]]]:
        mine = queries[index * QUERIES_PER_CLIENT : (index + 1) * QUERIES_PER_CLIENT]
        return [as_pairs(remote.search(query, 5)) for query in mine]

    started = time.monotonic()
    with ThreadPoolExecutor(N_CLIENTS) as pool:
        answers = [row for rows in pool.map(client, range(N_CLIENTS)) for row in rows]
    seconds = time.monotonic() - started
    after = request(server.port, "GET", "/health")[1]["batching"]
    assert answers == expected
    requests, batches = after["requests"] - before["requests"], after["batches"] - before["batches"]
    assert requests == N_CLIENTS * QUERIES_PER_CLIENT
    assert batches < requests / 2, (
        f"{batches} search calls for {requests} requests: concurrent requests were not batched"
    )
    print(f"{requests} requests in {seconds:.1f} s ({requests / seconds:.0f}/s), {batches} batched calls")


def test_batcher_shares_calls_and_isolates_a_failing_request(local: Retriever) -> None:
    async def scenario() -> tuple[list[Any], Any]:
        batcher: MicroBatcher[list[Hit]] = MicroBatcher(
            local.search_batch, max_wait_s=0.005, inline_queries=0
        )
        await batcher.start()
        try:
            requests = [
                ["capital of Chad"],
                ["anthem of Algeria", "highest point"],
                [42],
                ["currency of Peru"],
            ]
            outcomes = await asyncio.gather(*(batcher.search(q, 3) for q in requests), return_exceptions=True)
            return outcomes, batcher.stats()
        finally:
            await batcher.close()

    outcomes, stats = asyncio.run(scenario())
    assert isinstance(outcomes[2], TypeError)  # the bad request fails alone...
    good = [0, 1, 3]
    expected = [["capital of Chad"], ["anthem of Algeria", "highest point"], None, ["currency of Peru"]]
    for i in good:  # ...and its neighbours get exactly the in-process answers
        assert [as_pairs(hits) for hits in outcomes[i]] == [
            as_pairs(h) for h in local.search_batch(expected[i], 3)
        ]
    assert stats.requests == 4 and stats.queries == 5


def test_a_stuck_server_times_out_instead_of_hanging(server: ServerProcess, task: Task) -> None:
    remote = RemoteRetriever(server.url, task.corpus, read_timeout=0.5)
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(RemoteUnavailableError, match=r"did not answer POST /retrieve within 0.5 s"):
            remote.search("capital of Chad", 3)
        assert time.monotonic() - started < 3
    finally:
        server.process.send_signal(signal.SIGCONT)
    assert len(remote.search("capital of Chad", 3)) == 3  # and recovers once the server runs again


@pytest.fixture(scope="module")
def question_ids(task: Task) -> list[str]:
    test = task.questions("test")
    return [q.qid for q in test[: N_EPISODES // 2]] + [q.qid for q in test if q.hops == 2][: N_EPISODES // 2]


@pytest.fixture(scope="module")
def in_process_results(question_ids: list[str]) -> list[EpisodeResult]:
    return run_episodes(make_policy("bm25"), {"split": "test"}, question_ids=question_ids, progress=False)


def same_episodes(a: Sequence[EpisodeResult], b: Sequence[EpisodeResult]) -> bool:
    return [(r.question_id, r.reward, r.transcript) for r in a] == [
        (r.question_id, r.reward, r.transcript) for r in b
    ]


def test_env_with_the_remote_backend_plays_like_in_process(
    server: ServerProcess, question_ids: list[str], in_process_results: list[EpisodeResult]
) -> None:
    remote = run_episodes(
        make_policy("bm25"),
        {"split": "test", "backend": server.url},
        question_ids=question_ids,
        progress=False,
    )
    assert same_episodes(remote, in_process_results)
    assert sum(r.correct for r in remote) > 0


class KillServerAfter:
    """The bm25 policy, which kills the server once it has acted ``calls`` times."""

    name = "bm25-then-kill"

    def __init__(self, server: ServerProcess, calls: int) -> None:
        self.inner = make_policy("bm25")
        self.server, self.calls = server, calls

    def act(self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]) -> Sequence[Any]:
        self.calls -= 1
        if self.calls == 0:
            self.server.kill()
        return self.inner.act(observations, infos)

    def reset(self, indices: Sequence[int] | None = None) -> None:
        self.inner.reset(indices)


def test_killed_server_fails_clearly_and_a_restart_on_the_same_port_recovers(
    server: ServerProcess, question_ids: list[str], in_process_results: list[EpisodeResult]
) -> None:
    env_kwargs = {"split": "test", "backend": server.url}
    policy = KillServerAfter(server, calls=3)
    started = time.monotonic()
    pool = ThreadPoolExecutor(1)  # bounded: a hang fails the test instead of stalling it
    try:
        rollout = pool.submit(run_episodes, policy, env_kwargs, question_ids=question_ids, progress=False)
        with pytest.raises(RemoteUnavailableError) as caught:
            rollout.result(timeout=30)
    finally:
        pool.shutdown(wait=False)
    message = str(caught.value)
    assert time.monotonic() - started < 15, message
    assert server.url in message and "failed 3 times" in message
    assert f"searchenv serve --task factbook --backend bm25s --host 127.0.0.1 --port {server.port}" in message

    server.start(STARTUP_DEADLINE_S)  # same port; the env's cached remote retriever reconnects
    redone = run_episodes(make_policy("bm25"), env_kwargs, question_ids=question_ids, progress=False)
    assert same_episodes(redone, in_process_results)
