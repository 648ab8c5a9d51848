"""Retrieval: a chapter's text as passages with embeddings, and the ranking of a hybrid search.

    model.py      which model (a checked directory: config, tokenizer, ONNX file)   load_model_spec
    tokens.py     the model's tokenizer, for counting (no onnxruntime)              TokenCounter
    layout.py     a PDF page's extracted text into paragraphs and headings (pure)
    chunking.py   pages into token-aware, overlapping passages (pure)               chunk_chapter
    chunker.py    the same, in a child process on idle CPU time (the worker's)      chunk_in_child
    embedder.py   text to vectors with onnxruntime (loaded in the embedding process) Embedder
    protocol.py   the embedding process's loop and the messages on its socket
    process.py    the async client of the embedding process                         EmbeddingProcess
    ranking.py    exact top-k, hybrid fusion (weighted RRF), BSON vectors, a matrix cache   hybrid
    terms.py      a passage's words as a sparse term vector (stems, hashed ids)       term_vector
    bm25.py       chapters' postings and BM25 over a scope of them, in numpy          top_k

No web framework, no queue, no database client here: the worker, the store and the API wire
these in. Importing anything but ``embedder`` (and ``protocol.serve``, in the child) leaves
onnxruntime unloaded.

Settings they need (names for service/settings.py; the defaults are this package's):
    EMBEDDING_MODEL_DIR        None: the bundled MiniLM (load_model_spec)
    EMBEDDING_THREADS          1: onnxruntime intra-op threads of the embedding process
    EMBEDDING_MEMORY_LIMIT_MB  1024: its RLIMIT_AS (MiniLM needs ~585 MB at 1 thread)
    EMBEDDING_TIME_LIMIT_S     60: a request of 16 passages; over it, the process is replaced
    EMBEDDING_MAX_QUEUED       32: requests waiting; more are refused (EmbeddingBusy: 503)
    SEARCH_CACHE_MB            e.g. 256: ScopeCache budget (1.8-2 KB a 384-d passage with postings)
"""
