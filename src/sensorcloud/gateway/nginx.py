"""Render nginx.conf from the list of upstream addresses, routing as the original system did.

auth: /auth, /users, /api/v1/devices, /.well-known; iot: /iot, /api/v1/topics, /api/v1/readings,
the live feed; ingest: /api/v1/ingest, /api/v1/dead-letters; / the dashboard's built files;
/status any live instance (each aggregates every replica's health).
Idempotent requests are retried on another replica when one fails; POST/PATCH are retried
only when they never reached an upstream (connection refused), so no write is duplicated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
        "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"
    ),
}


@dataclass
class GatewayConfig:
    listen: int = 8083
    auth: list[str] = field(default_factory=list)
    iot: list[str] = field(default_factory=list)
    ingest: list[str] = field(default_factory=list)
    web_root: Path | None = None
    runtime_dir: Path | None = None  # pid and temp files (a non-root nginx needs writable ones)
    listen_host: str = "127.0.0.1"
    max_body: str = "1m"

    def check(self) -> None:
        for name in ("auth", "iot", "ingest"):
            if not getattr(self, name):
                raise ValueError(f"the gateway needs at least one {name} upstream (host:port)")


def _upstream(name: str, servers: list[str], keepalive: int) -> str:
    lines = [f"    upstream {name} {{"]
    lines += [f"        server {s} max_fails=1 fail_timeout=5s;" for s in servers]
    lines += [f"        keepalive {keepalive};", "    }"]
    return "\n".join(lines)


def _proxy(path: str, upstream: str, *, exact: bool = False, extra: str = "") -> str:
    match = f"= {path}" if exact else path
    return f"        location {match} {{\n            proxy_pass http://{upstream};\n{extra}        }}"


WEBSOCKET = (
    # a location with its own proxy_set_header inherits none of the server's: repeat them
    "            proxy_set_header Host $host;\n"
    "            proxy_set_header X-Forwarded-For $remote_addr;\n"
    "            proxy_set_header X-Forwarded-Proto $scheme;\n"
    "            proxy_http_version 1.1;\n"
    "            proxy_set_header Upgrade $http_upgrade;\n"
    "            proxy_set_header Connection $connection_upgrade;\n"
    "            proxy_buffering off;\n"
    "            proxy_read_timeout 1h;\n"
)


def compose_config() -> GatewayConfig:
    """The gateway of deploy/docker-compose.yml: service names resolve to every replica."""
    return GatewayConfig(
        listen=80,
        listen_host="0.0.0.0",  # noqa: S104 - inside its container, published by compose
        auth=["auth:8083"],
        iot=["iot:8083"],
        ingest=["ingest:8083"],
        web_root=Path("/usr/share/nginx/html"),
    )


def render(config: GatewayConfig) -> str:
    config.check()
    run = config.runtime_dir
    temp = (
        ""
        if run is None
        else "".join(
            f"    {kind}_temp_path {run / kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
    )
    pid = f"pid {run / 'nginx.pid'};\n" if run is not None else ""
    headers = "".join(f'        add_header {k} "{v}" always;\n' for k, v in SECURITY_HEADERS.items())
    web = (
        f"        location / {{\n            root {config.web_root};\n"
        "            try_files $uri $uri/ /index.html;\n        }"
        if config.web_root is not None
        else "        location / {\n            default_type application/json;\n"
        '            return 404 \'{"msg": "the dashboard is not built"}\';\n        }'
    )
    everyone = [*config.auth, *config.iot, *config.ingest]
    locations = "\n".join(
        [
            _proxy("/auth/", "auth"),
            _proxy("/users", "auth"),
            _proxy("/api/v1/devices", "auth"),
            _proxy("/.well-known/", "auth"),
            _proxy("/iot/", "iot"),
            _proxy("/api/v1/topics", "iot"),
            _proxy("/api/v1/readings", "iot"),
            _proxy("/api/v1/live", "iot", extra=WEBSOCKET),
            _proxy("/api/v1/ingest/", "ingest"),
            _proxy("/api/v1/dead-letters", "ingest"),
            _proxy("/status", "everyone", exact=True),
            # no replica of a service answers: a JSON 503 the clients understand, not nginx's HTML
            "        location @unavailable {\n            default_type application/json;\n"
            '            return 503 \'{"msg": "Service temporarily unavailable, try again shortly"}\';\n'
            "        }",
            "        location = /health {\n            default_type application/json;\n"
            '            return 200 \'{"status": "ok", "service": "gateway"}\';\n        }',
            web,
        ]
    )
    return f"""# Rendered by `sensorcloud gateway config`; edit the upstream lists there, not here.
worker_processes auto;
daemon off;
error_log stderr warn;
{pid}events {{
    worker_connections 4096;
}}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    server_tokens off;
    sendfile on;
{temp}    client_max_body_size {config.max_body};
    client_header_buffer_size 4k;
    large_client_header_buffers 4 16k;

{_upstream("auth", config.auth, 32)}
{_upstream("iot", config.iot, 64)}
{_upstream("ingest", config.ingest, 32)}
{_upstream("everyone", everyone, 16)}

    map $http_upgrade $connection_upgrade {{
        default upgrade;
        '' '';
    }}

    server {{
        listen {config.listen_host}:{config.listen};
{headers}
        proxy_http_version 1.1;
        proxy_set_header Connection $connection_upgrade;
        proxy_set_header Host $host;
        # replaced, not appended: a client cannot forge the address login throttling counts
        proxy_set_header X-Forwarded-For $remote_addr;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_connect_timeout 1s;
        proxy_read_timeout 30s;
        # another replica on failure; POST/PATCH only if they never reached one (nginx's default)
        proxy_next_upstream error timeout http_502 http_503 http_504;
        proxy_next_upstream_tries 3;
        proxy_next_upstream_timeout 10s;
        error_page 502 504 = @unavailable;

{locations}
    }}
}}
"""
