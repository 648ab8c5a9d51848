"""The OpenAPI document reads as documentation: every operation has a summary and a
description; the bodies clients use most carry an example, and every example decodes into its
own schema; the event stream's events are described with an example stream."""

from __future__ import annotations

import msgspec
import pytest

from service.api.http.examples import EVENT_STREAM_EXAMPLE, EXAMPLE_TYPES, EXAMPLES

METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture
async def document(client):
    """The document as /schema serves it (rendering drops nulls unless an example keeps them)."""
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    return response.json()


def test_every_operation_has_a_summary_and_a_description(document):
    missing = [
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS and not (operation.get("summary") and operation.get("description"))
    ]

    assert missing == []


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_each_example_is_a_valid_instance_of_its_schema(document, name):
    example = EXAMPLES[name]

    decoded = msgspec.json.decode(
        msgspec.json.encode(msgspec.convert(example, EXAMPLE_TYPES[name]))
    )

    assert document["components"]["schemas"][name]["examples"] == [example]
    if name.endswith("In"):  # a request body may leave out what has a default
        assert {key: decoded[key] for key in example} == example
    else:  # a response example names every field the endpoint returns, as it returns it
        assert decoded == example


def test_job_chapter_page_chunk_and_search_bodies_have_examples(document):
    schemas = document["components"]["schemas"]
    with_examples = {name for name, schema in schemas.items() if schema.get("examples")}

    assert {
        "JobStatusOut", "CreateJobIn", "ChapterOut", "ChapterPageOut", "PageOut",
        "PageListOut", "PageWordsOut", "ChunkListEnvelope", "ChunkEnvelope", "SearchIn",
        "SearchOut", "PageEventOut",
    } <= with_examples  # fmt: skip
    search = document["paths"]["/api/v1/search"]["post"]["requestBody"]["content"]
    assert search["application/json"]["schema"] == {"$ref": "#/components/schemas/SearchIn"}


def test_the_event_streams_events_are_documented(document):
    response = document["paths"]["/api/v1/books/jobs/{job_id}/events"]["get"]["responses"]["200"]
    stream = response["content"]["text/event-stream"]["schema"]

    for word in ("`progress`", "`page`", "JobStatusOut", "PageEventOut", "keepalive"):
        assert word in response["description"]
    assert stream["examples"] == [EVENT_STREAM_EXAMPLE]
    events = [line.split(": ", 1)[1] for line in EVENT_STREAM_EXAMPLE.splitlines()
              if line.startswith("data: ")]  # fmt: skip
    assert len(events) == 3
    for data in events[::2]:
        assert msgspec.json.decode(data, type=EXAMPLE_TYPES["JobStatusOut"])
    assert msgspec.json.decode(events[1], type=EXAMPLE_TYPES["PageEventOut"])
