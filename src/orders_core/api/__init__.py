"""The CRM command API (Litestar)."""
