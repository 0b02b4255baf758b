"""見守り (watching over a child) under a guardian's consent, end to end.

Run it from the project root with City OS installed (``make dev``):

    .venv/bin/python docs/demo/mimamori.py

It starts its own City OS with authentication on (in a temporary directory, on a free
loopback port) and plays every part:

- the town's IT staff: the first administrator key from the CLI, a policy that classifies
  ChildTag as personal data, an API key for the watching-over service;
- the town's identity provider: a signing key whose public half City OS trusts through a
  JWKS file (with Keycloak or any OIDC provider you give its URL instead,
  docs/howto/oidc.md);
- the watching-over service "mimamori": subscribes to child tags with its API key and
  receives notifications on its own small HTTP server;
- Hanako, the guardian of Taro: with her token she grants the service access to Taro's
  tag, withdraws it, and reads who accessed Taro's data.

Each step prints what happened; the script exits non-zero if anything is not as
described. tests/test_demo.py runs it.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

TENANT = "demo-town"
TAG = "urn:ngsi-ld:ChildTag:taro"
TARO = "urn:ngsi-ld:Person:taro"
ISSUER = "https://idp.demo-town.example"
POLICY = {
    "grants": [{"roles": ["watch"], "operations": ["read", "subscribe"], "types": ["ChildTag"]}],
    "classification": {"types": {"ChildTag": "personal"}},
    "dataSubject": {"attribute": "dataSubject"},
}
CITYOS = [sys.executable, "-c", "from cityos.cli import main; main()"]


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def check(ok: bool, what: str) -> None:
    print(("   ok: " if ok else "   FAILED: ") + what, flush=True)
    if not ok:
        raise SystemExit(1)


class IdentityProvider:
    """The town's IdP in miniature: one RSA key, published as a JWKS file."""

    def __init__(self, folder: Path) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = folder / "jwks.json"
        self.jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "demo", "use": "sig"}]}))

    def token(self, sub: str, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": "cityos", "sub": sub, "iat": now, "exp": now + 600}
        return jwt.encode({**body, **claims}, self.key, algorithm="RS256", headers={"kid": "demo"})


class Receiver:
    """The service's notification endpoint: a real HTTP server on a free port."""

    def __init__(self) -> None:
        self.received: queue.Queue[Any] = queue.Queue()
        inbox = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                inbox.put(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/notify"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def next(self, timeout: float) -> Any | None:
        try:
            return self.received.get(timeout=timeout)
        except queue.Empty:
            return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:  # noqa: PLR0915 - one story, told in order
    folder = Path(tempfile.mkdtemp(prefix="cityos-demo-"))
    data = folder / "data"
    idp = IdentityProvider(folder)
    issuers = folder / "issuers.toml"
    issuers.write_text(
        f'[[issuer]]\nissuer = "{ISSUER}"\njwks_file = "{idp.jwks}"\naudience = "cityos"\n'
    )
    config = folder / "cityos.toml"
    config.write_text(f'auth = true\nauth_issuers = "{issuers}"\n')

    step("Town IT: the first administrator key, from the console")
    out = subprocess.run(
        [
            *CITYOS,
            "apikey",
            "create",
            "--tenant",
            TENANT,
            "--name",
            "town-it",
            "--role",
            "admin",
            "--data-dir",
            str(data),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    admin = {"X-API-Key": json.loads(out)["key"], "NGSILD-Tenant": TENANT}
    print("   created key", json.loads(out)["id"], "(its secret is shown once, stored as a hash)")

    port = free_port()
    server = subprocess.Popen(
        [*CITYOS, "serve", "--port", str(port), "--data-dir", str(data), "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            for _ in range(100):
                try:
                    http.get("/version")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            story(http, admin, idp, Receiver())
    finally:
        server.terminate()
        server.wait(10)

    step("Auditor: the audit log's hash chain is intact")
    out = subprocess.run(
        [*CITYOS, "audit", "verify", "--data-dir", str(data)],
        check=False,
        capture_output=True,
        text=True,
    )
    print("  ", out.stdout.strip())
    check(out.returncode == 0, "cityos audit verify")
    print("\nThe demo ran as described.")


def story(
    http: httpx.Client, admin: dict[str, str], idp: IdentityProvider, inbox: Receiver
) -> None:
    step("Town IT: ChildTag is personal data; the role 'watch' may read and subscribe to it")
    r = http.put("/cityos/v1/policy", json=POLICY, headers=admin)
    check(r.status_code == 204, f"PUT /cityos/v1/policy -> {r.status_code}")
    r = http.post(
        "/cityos/v1/apikeys", json={"name": "mimamori", "roles": ["watch"]}, headers=admin
    )
    service = {"X-API-Key": r.json()["key"], "NGSILD-Tenant": TENANT}
    check(r.status_code == 201, "an API key for the service 'mimamori' with the role 'watch'")
    tag = {
        "id": TAG,
        "type": "ChildTag",
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [134.04, 34.34]},
        },
        "dataSubject": {"type": "Relationship", "object": TARO},
    }
    r = http.post("/ngsi-ld/v1/entities", json=tag, headers=admin)
    check(r.status_code == 201, "Taro's tag is registered")

    def move(lon: float) -> None:
        point = {"type": "Point", "coordinates": [lon, 34.34]}
        r = http.patch(
            f"/ngsi-ld/v1/entities/{TAG}/attrs",
            json={"location": {"type": "GeoProperty", "value": point}},
            headers=admin,
        )
        check(r.status_code == 204, f"the tag reports a new position ({lon}, 34.34)")

    step("Service: subscribes to child tags")
    sub = {
        "type": "Subscription",
        "entities": [{"type": "ChildTag"}],
        "notification": {"endpoint": {"uri": inbox.url}},
    }
    r = http.post("/ngsi-ld/v1/subscriptions", json=sub, headers=service)
    check(r.status_code == 201, "subscribed")
    move(134.041)
    check(inbox.next(2) is None, "no consent yet: the service receives nothing")
    r = http.get(f"/ngsi-ld/v1/entities/{TAG}", headers=service)
    check(r.status_code == 403, f"and may not read the tag ({r.status_code})")

    step("Hanako (Taro's guardian): grants 'mimamori' access to Taro's tag")
    hanako = {
        "Authorization": "Bearer " + idp.token("hanako", tenants=[TENANT], persons=[TARO]),
        "NGSILD-Tenant": TENANT,
    }
    consent = {
        "subject": TARO,
        "recipient": "mimamori",
        "purpose": "見守り: tell Hanako where Taro's tag is",
        "categories": ["ChildTag"],
    }
    r = http.post("/cityos/v1/consents", json=consent, headers=hanako)
    check(r.status_code == 201, "consent granted")
    consent_id = r.json()["id"]
    move(134.042)
    note = inbox.next(5)
    got = note and note["data"][0]["location"]["value"]["coordinates"]
    check(got == [134.042, 34.34], f"the service is notified of the position: {got}")
    r = http.get(f"/ngsi-ld/v1/entities/{TAG}", headers=service)
    check(r.status_code == 200, "and may read the tag")

    step("Hanako: withdraws the consent")
    r = http.delete(f"/cityos/v1/consents/{consent_id}", headers=hanako)
    check(r.status_code == 204, "consent withdrawn")
    move(134.043)
    check(inbox.next(2) is None, "the service receives nothing more")
    r = http.get(f"/ngsi-ld/v1/entities/{TAG}", headers=service)
    check(r.status_code == 403, f"and may no longer read the tag ({r.status_code})")

    step("Hanako: who accessed Taro's data?")
    r = http.get(f"/cityos/v1/subjects/{TARO}/access-log", headers=hanako)
    check(r.status_code == 200, "the access log")
    for e in r.json():
        client = e["detail"].get("client")
        print(
            f"   {e['at']}  {e['action']:16} by {e['actor']}" + (f" ({client})" if client else "")
        )
    reads = [e for e in r.json() if e["action"] == "personal.read"]
    check(len(reads) >= 2, "the service's notification and read are both in it")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
