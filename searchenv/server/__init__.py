"""A retrieval server speaking Search-R1's protocol, so RL frameworks can search a SearchQA index.

    searchenv serve --task factbook --backend bm25s --port 8000
    curl -s localhost:8000/retrieve -d '{"queries": ["capital of Chad"], "topk": 3, "return_scores": true}'

Modules: ``protocol`` (request validation and response shapes, no web framework), ``batching``
(the asyncio micro-batcher), ``app`` (the FastAPI app factory; needs the ``server`` extra),
``serve`` (the ``searchenv serve`` command). The client side is the ``remote`` retrieval backend,
``searchenv.retrieval.remote``.
"""
