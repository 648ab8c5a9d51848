"""POST /api/v1/search: the caller's passages, by keyword, vector or both, on the real mongod
and a real embedding process; bad input is a clear 4xx; another user's passages never appear."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from service.retrieval.ranking import HYBRID_K, KEYWORD_DEPTH, VECTOR_DEPTH, hybrid
from tests.support.pdfs import text_pdf, topics_pdf
from worker.reindex import reindex

SEARCH = "/api/v1/search"
# Each asks for one page of topics_pdf() in other words than the page's.
PARAPHRASES = {
    "what do leaves do with sunshine": "Photosynthesis",
    "why does the water level at the coast go up and down": "Harbour tides",
    "what protected a fortress from invaders": "Castle defences",
    "what makes dough get bigger before it goes in the oven": "Bread baking",
}


@pytest.fixture
async def indexed(submit, run_worker, index_chapters):
    """``await indexed(pdf, user_id=..., book_id=...)``: a chapter made and indexed; its job."""

    async def make(data: bytes, user_id: str = "alice", **options):
        job = await submit(data, user_id=user_id, **options)
        await run_worker()
        assert await index_chapters() >= 1
        return job

    return make


async def _search(client, auth_headers, user_id="alice", **body):
    return await client.post(SEARCH, json=body, headers=auth_headers(user_id))


@pytest.mark.parametrize("mode", ["hybrid", "vector"])
async def test_a_paraphrased_question_finds_the_page_that_answers_it(
    client, auth_headers, indexed, mode
):
    await indexed(topics_pdf())

    found = {}
    for question, _subject in PARAPHRASES.items():
        response = await _search(client, auth_headers, query=question, mode=mode, k=3)
        assert response.status_code == 200, response.text
        found[question] = response.json()["results"][0]["section"]

    assert found == PARAPHRASES


async def test_a_result_says_where_the_passage_is_and_opens_its_page(
    app, client, auth_headers, indexed
):
    job = await indexed(topics_pdf(title="Four subjects"))

    body = (await _search(client, auth_headers, query="tides and the moon")).json()

    assert body["mode"] == "hybrid"
    assert body["model"] == app.state.services.model.name
    best = body["results"][0]
    assert best["section"] == "Harbour tides"
    assert (best["page_start"], best["page_end"], best["page_number"]) == (2, 2, 2)
    assert best["job_id"] == job["job_id"]
    assert best["book_id"] == "book_1"
    assert best["chapter_title"] == "Four subjects"
    assert "Moon" in best["content"]
    assert "Moon" in best["snippet"]
    assert len(best["snippet"]) <= 260
    assert best["score"] > 0
    thumbnail = await client.get(best["thumbnail_url"])  # signed: no Authorization needed
    assert thumbnail.status_code == 200
    assert thumbnail.headers["content-type"] == "image/webp"


async def test_keyword_mode_finds_the_words_themselves(client, auth_headers, indexed):
    await indexed(topics_pdf())

    body = (await _search(client, auth_headers, query="portcullis", mode="keyword")).json()

    assert [result["section"] for result in body["results"]] == ["Castle defences"]


async def test_hybrid_returns_k_results_best_first(client, auth_headers, indexed):
    await indexed(text_pdf(20, words=300))

    body = (await _search(client, auth_headers, query="word3-17 word3-18", k=HYBRID_K)).json()

    scores = [result["score"] for result in body["results"]]
    assert len(scores) == HYBRID_K
    assert scores == sorted(scores, reverse=True)
    assert body["results"][0]["page_start"] <= 4 <= body["results"][0]["page_end"]


async def test_another_users_passages_never_appear(client, auth_headers, indexed):
    await indexed(topics_pdf(), user_id="bob")
    await indexed(text_pdf(2))

    for mode in ("hybrid", "vector", "keyword"):
        body = (await _search(client, auth_headers, query="chlorophyll sunlight", mode=mode)).json()
        assert all(result["section"] != "Photosynthesis" for result in body["results"])
        assert all(result["book_id"] == "book_1" for result in body["results"])
    bobs = (await _search(client, auth_headers, "bob", query="chlorophyll")).json()
    assert bobs["results"][0]["section"] == "Photosynthesis"


async def test_the_scope_is_a_book_or_some_chapters(client, auth_headers, submit, indexed):
    first = await indexed(topics_pdf())
    await indexed(topics_pdf(), book_id="book_2")
    chapter_of = {}
    for job in (first,):
        polled = await client.get(
            f"/api/v1/books/jobs/{job['job_id']}", headers=auth_headers("alice")
        )
        chapter_of[job["job_id"]] = polled.json()["result"]["chapter_id"]

    everywhere = (await _search(client, auth_headers, query="drawbridge", k=10)).json()
    one_book = (await _search(client, auth_headers, query="drawbridge", book_id="book_2")).json()
    one_chapter = (
        await _search(
            client, auth_headers, query="drawbridge", chapter_ids=[chapter_of[first["job_id"]]]
        )
    ).json()

    assert {r["book_id"] for r in everywhere["results"]} == {"book_1", "book_2"}
    assert {r["book_id"] for r in one_book["results"]} == {"book_2"}
    assert {r["chapter_id"] for r in one_chapter["results"]} == {chapter_of[first["job_id"]]}


async def test_another_users_chapter_id_is_a_404(client, auth_headers, indexed):
    bob = await indexed(topics_pdf(), user_id="bob")
    polled = await client.get(f"/api/v1/books/jobs/{bob['job_id']}", headers=auth_headers("bob"))
    bobs_chapter = polled.json()["result"]["chapter_id"]

    response = await _search(client, auth_headers, query="tides", chapter_ids=[bobs_chapter])

    assert response.status_code == 404
    assert response.json() == {"detail": f"Chapter {bobs_chapter} not found"}


async def test_a_chapter_not_indexed_yet_is_not_searched_and_nothing_fails(
    client, auth_headers, submit, run_worker
):
    await submit(topics_pdf())
    await run_worker()  # ready to read, not indexed yet

    response = await _search(client, auth_headers, query="tides")

    assert response.status_code == 200
    assert response.json()["results"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": ""}, "query"),
        ({"query": "   "}, "query"),
        ({"query": "x" * 1001}, "query"),
        ({"query": "tides", "k": 0}, "k"),
        ({"query": "tides", "k": 51}, "k"),
        ({"query": "tides", "k": "ten"}, "k"),
        ({"query": "tides", "mode": "semantic"}, "mode"),
        ({"query": "tides", "chapter_ids": []}, "chapter_ids"),
        ({"query": "tides", "chapter_ids": [str(n) for n in range(101)]}, "chapter_ids"),
        ({"query": "tides", "book_id": "a/b"}, "book_id"),
        ({"query": "tides", "extra": 1}, "extra"),
        ({}, "query"),
    ],
)
async def test_bad_input_is_a_400_naming_the_field(client, auth_headers, body, field):
    response = await client.post(SEARCH, json=body, headers=auth_headers("alice"))

    assert response.status_code == 400
    assert field in {error["field"] for error in response.json()["errors"]}


async def test_a_100000_character_query_is_refused_before_it_is_read_whole(client, auth_headers):
    response = await _search(client, auth_headers, query="tides " * 20_000)

    assert response.status_code == 413
    assert response.json()["detail"] == "JSON body exceeds 64 KB"


async def test_search_needs_a_valid_token(client):
    response = await client.post(SEARCH, json={"query": "tides"})

    assert response.status_code == 401
    assert response.json() == {"detail": "Could not validate credentials"}


async def test_searches_past_the_rate_limit_are_429_with_retry_after(
    other_app, settings, auth_headers
):
    limited = settings.model_copy(update={"search_rate_limit_per_minute": 2})
    async with other_app(limited) as client:
        answers = [
            (await client.post(SEARCH, json={"query": "t"}, headers=auth_headers("carol")))
            for _ in range(3)
        ]

    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert answers[2].json()["detail"] == "Rate limit exceeded: 2 searches per 60 seconds"
    assert int(answers[2].headers["retry-after"]) >= 1


async def test_with_vector_search_atlas_a_server_without_it_still_answers_exactly(
    other_app, settings, auth_headers, indexed, caplog
):
    await indexed(topics_pdf())
    atlas = settings.model_copy(update={"vector_search": "atlas"})

    async with other_app(atlas) as client:
        response = await client.post(
            SEARCH,
            json={"query": "tides and the moon", "mode": "vector"},
            headers=auth_headers("alice"),
        )

    assert response.status_code == 200
    assert response.json()["results"][0]["section"] == "Harbour tides"
    assert any("$vectorSearch refused" in record.getMessage() for record in caplog.records)


async def test_metrics_show_search_latency_and_where_the_index_stands(
    client, auth_headers, indexed, submit, run_worker
):
    labels = {"method": "POST", "path": SEARCH}
    await indexed(topics_pdf())
    await submit(text_pdf(2))
    await run_worker()  # a second chapter, stored and not indexed yet
    timed = REGISTRY.get_sample_value("pcj_request_duration_seconds_count", labels) or 0.0
    assert (await _search(client, auth_headers, query="tides")).status_code == 200

    await client.get("/metrics")

    assert REGISTRY.get_sample_value("pcj_request_duration_seconds_count", labels) == timed + 1
    assert REGISTRY.get_sample_value("pcj_chapters_index", {"status": "ready"}) == 1
    assert REGISTRY.get_sample_value("pcj_chapters_index", {"status": "pending"}) == 1
    assert REGISTRY.get_sample_value("pcj_index_lag_seconds") > 0


async def test_hybrid_is_the_fusion_of_the_keyword_and_vector_searches_run_on_their_own(
    client, auth_headers, indexed
):
    await indexed(text_pdf(20, words=300))
    await indexed(topics_pdf(), book_id="book_2")
    query = "word3-17 word5-2 harbour tides"

    keyword = await _search(client, auth_headers, query=query, mode="keyword", k=KEYWORD_DEPTH)
    vector = await _search(client, auth_headers, query=query, mode="vector", k=VECTOR_DEPTH)
    both = await _search(client, auth_headers, query=query, mode="hybrid", k=HYBRID_K)

    ids = {mode: [r["chunk_id"] for r in found.json()["results"]] for mode, found in (
        ("keyword", keyword), ("vector", vector), ("hybrid", both)
    )}  # fmt: skip
    assert len(ids["keyword"]) == KEYWORD_DEPTH
    expected = hybrid(ids["vector"], ids["keyword"])[:HYBRID_K]
    assert ids["hybrid"] == [chunk_id for chunk_id, _ in expected]
    scores = [r["score"] for r in both.json()["results"]]
    assert scores == pytest.approx([round(score, 6) for _, score in expected])


@pytest.fixture
def text_index_searches(app, monkeypatch):
    """The scopes keyword search sent to MongoDB's text index (it still runs them)."""
    chunks = app.state.services.store.chunks
    real, seen = chunks.keyword, []

    async def keyword(user_id, query, chapter_ids, limit):
        seen.append(sorted(chapter_ids))
        return await real(user_id, query, chapter_ids, limit)

    monkeypatch.setattr(chunks, "keyword", keyword)
    return seen


async def test_keyword_search_is_bm25_without_the_text_index(
    client, auth_headers, indexed, text_index_searches
):
    await indexed(topics_pdf())

    body = (await _search(client, auth_headers, query="portcullis", mode="keyword")).json()

    assert [result["section"] for result in body["results"]] == ["Castle defences"]
    assert text_index_searches == []


async def test_chapters_without_term_vectors_are_searched_by_the_text_index_until_reindexed(
    client, auth_headers, collections, settings, indexed, text_index_searches
):
    await indexed(topics_pdf())
    await indexed(text_pdf(3), book_id="book_2")
    old = await collections.chapters.find_one({"book_id": "book_1"})
    # As a chapter indexed before passages had term vectors was left.
    await collections.chunks.update_many(
        {"chapter_id": old["chapter_id"]}, {"$unset": {"terms": ""}}
    )
    await collections.chapters.update_one(
        {"chapter_id": old["chapter_id"]}, {"$unset": {"search.terms": ""}}
    )

    before = await _search(client, auth_headers, query="portcullis drawbridge", mode="hybrid")
    searched_by_text = list(text_index_searches)
    await reindex(settings, everything=False, user_id=None)
    after = await _search(client, auth_headers, query="portcullis drawbridge", mode="hybrid")

    assert before.status_code == after.status_code == 200
    assert before.json()["results"][0]["section"] == "Castle defences"
    assert len(searched_by_text) == 1
    assert len(searched_by_text[0]) == 2  # the whole scope
    assert after.json()["results"][0]["section"] == "Castle defences"
    assert text_index_searches == searched_by_text  # none since: BM25


async def test_with_keyword_search_text_the_text_index_ranks(
    other_app, settings, auth_headers, collections, indexed
):
    await indexed(topics_pdf())
    text = settings.model_copy(update={"keyword_search": "text"})

    async with other_app(text) as client:
        response = await client.post(
            SEARCH, json={"query": "portcullis", "mode": "keyword"}, headers=auth_headers("alice")
        )

    (result,) = response.json()["results"]
    scored = await collections.chunks.find_one(
        {"user_id": "alice", "$text": {"$search": "portcullis"}},
        {"score": {"$meta": "textScore"}},
    )
    assert result["chunk_id"] == scored["_id"]
    assert result["score"] == round(scored["score"], 6)  # MongoDB's textScore, not BM25's


@pytest.mark.parametrize("mode", ["hybrid", "vector"])
async def test_a_query_that_cannot_be_embedded_is_a_503_while_keyword_search_still_answers(
    other_app, settings, auth_headers, indexed, mode
):
    await indexed(topics_pdf())
    # The model cannot load in 256 MB of address space: the embedding process cannot start.
    starved = settings.model_copy(update={"embedding_memory_limit_mb": 256})

    async with other_app(starved) as client:
        failed = await _search(client, auth_headers, query="tides", mode=mode)
        keyword = await _search(client, auth_headers, query="tides", mode="keyword")

    assert failed.status_code == 503
    assert failed.json()["detail"].startswith("Service temporarily unavailable: search")
    assert keyword.status_code == 200
    assert keyword.json()["results"][0]["section"] == "Harbour tides"
