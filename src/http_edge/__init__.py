"""The HTTP edge every API process shares, written once: the `HttpEdge` Litestar plugin (`plugin.py`) with
bearer tokens (`identity.py`, `auth.py`), the partner rate limit (`rate_limit.py`), health over the parts'
probes (`health.py`), HTTP metrics (`metrics.py`), the error answers (`errors.py`) and their documentation
(`error_contract.py`, `strict_schema.py`). Nothing in the domain imports it."""
