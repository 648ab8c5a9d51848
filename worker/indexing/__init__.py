"""Search indexing: a chapter's pages into retrieval chunks with vectors, beside the jobs."""
