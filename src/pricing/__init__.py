"""pricing: the quote engine (pure) and the worker that serves it over the broker.

`quote.py` prices a model or says why it cannot (`quote_for`, `price`); `meshes.py` reads files into
triangles in millimetres (`load_triangles`), with `three_mf.py` for 3MF packages; `geometry.py` measures
them (`figures_of`, `defective_edges`); `limits.py` bounds a quote; `rejections.py` names the reasons;
`worker.py` consumes `pricing.requests` and publishes each quote or rejection; `metrics.py` counts them.
"""
