"""``--auth``: measure the server as a city service uses it, with authentication on.

An administrator key bypasses the tenants' policies, so measuring with one would only
measure authentication. The benchmark therefore makes, on the server it started:

1. an administrator key, with ``cityos apikey create`` on the server's data directory
   (the first key can only come from the command line);
2. with that key, a policy of the default tenant granting role ``bench`` every operation
   on every type (``PUT /cityos/v1/policy``);
3. a service key holding only role ``bench`` (``POST /cityos/v1/apikeys``).

Every request of every workload then carries the service key in ``X-API-Key``, so reads
are filtered and writes checked by the policy, as for a real city service.
"""

from __future__ import annotations

import shlex
import subprocess
import urllib.error
import urllib.request
from typing import Any

import orjson

from bench.server import ServerError, ServerProcess

__all__ = ["API_KEY_HEADER", "ROLE", "create_service_key"]

API_KEY_HEADER = "X-API-Key"
ROLE = "bench"
POLICY = {"grants": [{"roles": [ROLE], "operations": ["read", "write", "delete", "subscribe"]}]}


def create_service_key(server: ServerProcess) -> str:
    """The secret of a new non-administrator key of role ``bench`` on ``server``."""
    admin = _create_admin_key(server)
    admin_api = server.api.removesuffix("/ngsi-ld/v1") + "/cityos/v1"
    _call("PUT", f"{admin_api}/policy", admin, POLICY)
    created = _call(
        "POST",
        f"{admin_api}/apikeys",
        admin,
        {"name": "bench-service", "roles": [ROLE], "tenant": ""},
    )
    return str(created["key"])


def _create_admin_key(server: ServerProcess) -> str:
    # The server's own command up to ``serve``, so the key is made by the same code.
    argv = shlex.split(server.command)
    if "serve" not in argv:
        raise ServerError(f"--auth needs a server command '<cityos> serve ...', not {argv}")
    argv = [*argv[: argv.index("serve")], "apikey", "create", "--tenant", "*"]
    argv += ["--name", "bench-operator"]
    argv += ["--role", "admin", "--data-dir", str(server.data_dir)]
    done = subprocess.run(argv, capture_output=True, check=False)
    if done.returncode != 0:
        raise ServerError(f"{' '.join(argv)} failed: {done.stderr.decode(errors='replace')}")
    return str(orjson.loads(done.stdout)["key"])


def _call(method: str, url: str, admin_key: str, body: dict[str, Any]) -> Any:
    headers = {API_KEY_HEADER: admin_key, "Content-Type": "application/json"}
    request = urllib.request.Request(url, orjson.dumps(body), headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = response.read()
    except urllib.error.HTTPError as exc:
        raise ServerError(f"{method} {url} -> {exc.code}: {exc.read()[:300]!r}") from None
    return orjson.loads(answer) if answer else None
