"""One frozen Settings object, read once at startup and validated.

Values come from ``CITYOS_*`` environment variables, then an optional TOML file
(``CITYOS_CONFIG`` or ``--config``), then the defaults below. The default needs no
configuration at all: SQLite in ``./cityos-data``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

__all__ = ["SETTINGS_HELP", "Settings", "load_settings"]

SETTINGS_HELP: dict[str, str] = {
    "host": "Address the HTTP server binds to.",
    "port": "TCP port the HTTP server listens on.",
    "data_dir": "Directory holding the embedded SQLite database and other local state.",
    "database_url": (
        "Store to use: empty (or sqlite:///PATH) for embedded SQLite in data_dir, "
        "postgresql://USER:PASSWORD@HOST:PORT/DATABASE for PostgreSQL with PostGIS."
    ),
    "durable": "Wait for each commit to reach the disk (fsync) before acknowledging a write.",
    "max_body_bytes": "Largest request body accepted; larger bodies get 413.",
    "default_limit": "Entities per page when a query gives no limit.",
    "max_limit": "Largest limit a query may ask for; larger ones get 403 (TooManyResults).",
    "context_fetch_timeout": "Seconds to wait for a remote @context before LdContextNotAvailable.",
    "public_url": "Base URL clients reach this City OS at, used in hosted @context URLs.",
    "log_level": "Logging level: debug, info, warning or error.",
    "temporal_history": "Record every change of every attribute as temporal history.",
    "temporal_max_instances": "Instances per attribute in one temporal response (more: 206).",
    "retention": (
        "How long temporal instances are kept: comma-separated rules DURATION, "
        "@TENANT=DURATION, TYPE=DURATION or TYPE@TENANT=DURATION, e.g. "
        "'P90D, @takamatsu=P365D, Vehicle=P30D'; the most specific rule wins; "
        "empty keeps everything."
    ),
    "retention_interval": "Seconds between two runs of the retention job.",
    "federation_alias": (
        "Name this City OS puts in the Via header of requests it forwards to context "
        "sources, and recognises to detect loops; empty: host:port of public_url."
    ),
    "federation_timeout": (
        "Seconds to wait for a context source that does not set management.timeout."
    ),
    "v2_context": (
        "@context mapping NGSI-v2 types and attribute names to IRIs; empty: the NGSI-LD core context."
    ),
    "v2_id_prefix": "Prefix that makes an NGSI-v2 Entity id that is not a URI an NGSI-LD id.",
    "auth": (
        "Require authentication (OIDC bearer tokens or API keys) and enforce the tenants' "
        "access policies and consents; off: every request may do everything (development)."
    ),
    "auth_issuers": (
        "TOML file of the OpenID Connect issuers whose tokens are accepted "
        "(see howto/oidc.md); empty: API keys only."
    ),
    "insecure": (
        "Serve without authentication on an address other than loopback (refused otherwise)."
    ),
    "personal_data_key": (
        "File holding the key that encrypts attribute values classified personal at rest "
        "(cityos keys generate); empty: not encrypted."
    ),
}


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("cityos-data")
    database_url: str = ""
    durable: bool = True
    max_body_bytes: int = 16 * 1024 * 1024
    default_limit: int = 20
    max_limit: int = 1000
    context_fetch_timeout: float = 5.0
    public_url: str = ""
    log_level: str = "info"
    temporal_history: bool = True
    temporal_max_instances: int = 10000
    retention: str = ""
    retention_interval: float = 3600.0
    federation_alias: str = ""
    federation_timeout: float = 5.0
    v2_context: str = ""
    v2_id_prefix: str = "urn:ngsi-v2:"
    auth: bool = False
    auth_issuers: str = ""
    insecure: bool = False
    personal_data_key: str = ""

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be between 1 and 65535, not {self.port}")
        if self.max_body_bytes < 1024:
            raise ValueError("max_body_bytes must be at least 1024")
        if not 0 < self.default_limit <= self.max_limit:
            raise ValueError("default_limit must be between 1 and max_limit")
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise ValueError(
                f"log_level must be debug, info, warning or error, not {self.log_level!r}"
            )
        if self.temporal_max_instances < 1:
            raise ValueError("temporal_max_instances must be at least 1")
        if self.retention_interval <= 0:
            raise ValueError("retention_interval must be more than 0 seconds")
        if self.federation_timeout <= 0:
            raise ValueError("federation_timeout must be more than 0 seconds")
        if any(c.isspace() or c == "," for c in self.federation_alias):
            raise ValueError("federation_alias must not contain spaces or commas")
        if not re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:\S*$", self.v2_id_prefix):
            raise ValueError("v2_id_prefix must start with a URI scheme, e.g. urn:ngsi-v2:")
        from cityos.core.retention import parse_retention  # checks the rules' syntax

        parse_retention(self.retention)
        if self.database_url and not self.database_url.startswith(
            ("sqlite:///", "postgresql://", "postgres://")
        ):
            raise ValueError(
                "database_url must start with sqlite:///, postgresql:// or postgres://"
            )

    @property
    def base_url(self) -> str:
        return self.public_url.rstrip("/") or f"http://{self.host}:{self.port}"

    @property
    def alias(self) -> str:
        """How this City OS names itself in Via headers (clause 6.3.18)."""
        return self.federation_alias or self.base_url.split("://", 1)[-1]

    @property
    def sqlite_path(self) -> Path:
        if self.database_url.startswith("sqlite:///"):
            return Path(self.database_url[len("sqlite:///") :])
        return self.data_dir / "cityos.db"


def _coerce(name: str, raw: Any) -> Any:
    kind = {f.name: f.type for f in fields(Settings)}[name]
    if kind == "bool" and isinstance(raw, str):
        if raw.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise ValueError(f"{name} must be true or false, not {raw!r}")
        return raw.lower() in ("1", "true", "yes", "on")
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    if kind == "Path":
        return Path(raw)
    return raw if kind == "bool" else str(raw)


def load_settings(
    overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Defaults < config file < environment < explicit overrides (command-line options)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    config_file = (overrides or {}).get("config") or env.get("CITYOS_CONFIG")
    if config_file:
        with open(config_file, "rb") as fh:
            values.update(tomllib.load(fh))
    for name in SETTINGS_HELP:
        key = "CITYOS_" + name.upper()
        if key in env:
            values[name] = env[key]
    for name, value in (overrides or {}).items():
        if value is not None and name != "config":
            values[name] = value
    unknown = set(values) - set(SETTINGS_HELP)
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
    return Settings(**{k: _coerce(k, v) for k, v in values.items()})
