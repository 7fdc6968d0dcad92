"""The HTTP edge both APIs share: bearer tokens (`identity.py`) and the documented error answers
(`error_contract.py`). Nothing in the domain imports it."""
