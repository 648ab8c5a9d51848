"""Retrieval: a chapter's text as passages with embeddings, and the ranking of a hybrid search.

    model.py      which model (a checked directory: config, tokenizer, ONNX file)   load_model_spec
    tokens.py     the model's tokenizer, for counting (no onnxruntime)              TokenCounter
    layout.py     a PDF page's extracted text into paragraphs and headings (pure)
    chunking.py   pages into token-aware, overlapping passages (pure)               chunk_chapter
    embedder.py   text to vectors with onnxruntime (loaded in the embedding process) Embedder
    protocol.py   the embedding process's loop and the messages on its socket
    process.py    the async client of the embedding process                         EmbeddingProcess
    ranking.py    exact top-k, hybrid fusion (weighted RRF), BSON vectors, a matrix cache   hybrid

No web framework, no queue, no database client here: the worker, the store and the API wire
these in. Importing anything but ``embedder`` (and ``protocol.serve``, in the child) leaves
onnxruntime unloaded.
"""
