"""The native launcher: the whole Videoflix stack as local processes, one command.

    python -m deploy.devstack up      [--data-dir .data] [--port-base 8000] [--observe]
    python -m deploy.devstack down    [--data-dir .data]
    python -m deploy.devstack infra   [--data-dir .data] [--print-env]
    python -m deploy.devstack status  [--data-dir .data] [--port-base 8000]
    python -m deploy.devstack nats-config [--data-dir .data]   (users for an operator's NATS)

`up` uses PostgreSQL, Redis and NATS at the configured URLs when they answer, and otherwise
starts private instances from the distribution's binaries under the data directory (on the
configured ports, so the URLs stay right). Every process runs as its own least-privileged
user on each server (deploy/privileges.py, docs/SECURITY.md): the configured URLs are the
launcher's admin connections and reach no process. A NATS server that accepts anyone cannot
get users at runtime, so then the stack runs its own NATS with them (port base + 22).
It creates the databases and roles, runs migrations,
renders the Caddy config from gateway/routes.toml, runs every process under honcho with
interleaved, prefixed logs, reports health, and on Ctrl-C or `down` stops everything it
started, private servers included. Running it twice is harmless: a second `up` sees the
first and says so. With `--observe` (make up OBSERVE=1) Debian's Prometheus runs beside the
stack on port base + 9, scraping every process (`observe`, docs/OBSERVABILITY.md).

Configuration comes from the environment, then `.env`, then defaults derived from the
port base (see .env.example).

The parts: `config` (the process table, the stack's environment, the development admin),
`system` (Debian packages, binaries, ports), `servers` (private PostgreSQL, Redis and NATS),
`provision` (every process's own user on them), `supervise` (migrations, the Procfile,
honcho, health), `observe` (Prometheus' configuration) and `cli` (the commands above).
"""
