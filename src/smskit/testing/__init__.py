"""Testing helpers for users and plugin authors: a loopback provider, a provider conformance
suite, and a way to run any ASGI app under a real uvicorn on loopback."""
