"""The trust layer's console commands on a real SQLite store: the first key, keys
listed and revoked, a policy set and shown, issuers checked by check-config; and each
change in the audit log."""

from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner, Result

from cityos.cli import main


def cityos(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def test_apikey_create_list_revoke_and_audit(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    r = cityos(
        "apikey", "create", "--tenant", "takamatsu", "--name", "town-it", "--role", "admin", *data
    )
    assert r.exit_code == 0, r.output
    created = orjson.loads(r.output)
    assert created["key"].startswith("cok_") and created["roles"] == ["admin"]
    r = cityos("apikey", "list", *data)
    listed = [orjson.loads(line) for line in r.output.splitlines()]
    assert [k["id"] for k in listed] == [created["id"]]
    assert created["key"] not in r.output and "hash" not in r.output  # never the secret
    r = cityos("apikey", "revoke", created["id"], *data)
    assert r.exit_code == 0, r.output
    (revoked,) = [
        orjson.loads(line) for line in cityos("apikey", "list", *data).output.splitlines()
    ]
    assert revoked["revokedAt"]
    assert cityos("apikey", "revoke", "nope", *data).exit_code == 1
    # a bad expiry is refused with the reason, and nothing is stored
    r = cityos(
        "apikey",
        "create",
        "--tenant",
        "t",
        "--name",
        "x",
        "--expires",
        "2001-01-01T00:00:00Z",
        *data,
    )
    assert r.exit_code == 1 and "expiresAt" in r.output
    exported = cityos("audit", "export", *data).output.splitlines()
    assert [orjson.loads(line)["action"] for line in exported] == ["apikey.create", "apikey.revoke"]
    assert cityos("audit", "verify", *data).exit_code == 0


def test_policy_set_show_and_refuse_an_invalid_one(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    policy = {"grants": [{"roles": ["viewer"], "operations": ["read"]}], "publishOpenData": True}
    file = tmp_path / "policy.json"
    file.write_bytes(orjson.dumps(policy))
    r = cityos("policy", "set", "--tenant", "takamatsu", str(file), *data)
    assert r.exit_code == 0, r.output
    r = cityos("policy", "show", "--tenant", "takamatsu", *data)
    assert orjson.loads(r.output) == policy
    file.write_bytes(orjson.dumps({"grants": [{"roles": ["viewer"], "operations": ["fly"]}]}))
    r = cityos("policy", "set", "--tenant", "takamatsu", str(file), *data)
    assert r.exit_code == 1 and "fly" in r.output
    assert orjson.loads(cityos("policy", "show", "--tenant", "takamatsu", *data).output) == policy
    assert cityos("policy", "show", "--tenant", "elsewhere", *data).exit_code == 1


def test_check_config_reads_the_trusted_issuers(tmp_path: Path) -> None:
    issuers = tmp_path / "issuers.toml"
    config = tmp_path / "cityos.toml"
    config.write_text(f'auth = true\nauth_issuers = "{issuers}"\n')
    issuers.write_text('[[issuer]]\nissuer = "https://sso.example/realms/town"\n')
    r = cityos("check-config", "--config", str(config))
    assert r.exit_code == 0, r.output
    assert "trusted issuer https://sso.example/realms/town" in r.output
    issuers.write_text('[[issuer]]\nissuer = "https://sso.example/realms/town"\naudiense = "x"\n')
    r = cityos("check-config", "--config", str(config))
    assert r.exit_code == 1 and "audiense" in r.output


def test_consent_list_filters_by_subject_and_recipient(tmp_path: Path) -> None:
    import asyncio

    from cityos.core import consent as consents
    from cityos.storage.sqlite.store import SQLiteStore
    from cityos.trust import CONSENT

    async def grant() -> None:
        store = SQLiteStore(tmp_path / "cityos.db")
        await store.open()
        for subject, recipient in (
            ("urn:p:1", "mimamori"),
            ("urn:p:2", "mimamori"),
            ("urn:p:1", "health"),
        ):
            c = consents.parse_consent(
                {
                    "subject": subject,
                    "recipient": recipient,
                    "purpose": "p",
                    "categories": ["urn:t"],
                },
                tenant="t",
                by="cli",
                now="2026-01-01T00:00:00Z",
                expand=lambda s: s,
            )
            await store.trust_put(CONSENT, "t", c.id, consents.to_doc(c), key=recipient)
        await store.close()

    asyncio.run(grant())
    data = ["--data-dir", str(tmp_path)]
    r = cityos("consent", "list", "--subject", "urn:p:1", *data)
    assert r.exit_code == 0, r.output
    assert sorted(orjson.loads(x)["recipient"] for x in r.output.splitlines()) == [
        "health",
        "mimamori",
    ]
    r = cityos("consent", "list", "--recipient", "mimamori", *data)
    assert sorted(orjson.loads(x)["subject"] for x in r.output.splitlines()) == [
        "urn:p:1",
        "urn:p:2",
    ]
