"""videoflix-testing: the pytest plugin and helpers of every Videoflix test suite and
benchmark (never installed in a service's image).

- `plugin`: the fixtures loaded for every test run (`-p videoflix_testing.plugin`): per-run
  databases, Redis prefix, NATS names, a token issuer and its JWKS server; `ServerThread`,
  `free_port`, `wait_until(_async)`,
- `processes`: stopping processes we started (SIGTERM, grace, SIGKILL; the launcher uses it
  too),
- `clients`: `asgi_client`, an in-process httpx client of an app,
- `cleanup`: removing a run's Redis keys and NATS streams,
- `browser`: Debian's Chromium for Playwright, the same flags everywhere,
- `tokens`: `TestTokenIssuer`, signing like auth,
- `fuzz`: schemathesis fuzzing of a service's OpenAPI document.
"""
