"""The command line end to end through click's runner: tokens, keys, logs, check, serve and config errors."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from switchpoint import app, auth, cli
from switchpoint.store import db, repo
from switchpoint.store.logwriter import LogWriter
from switchpoint.store.secrets import Sealer, load_master_key

CONFIG = """\
gateways:
  default: {}
  prod:
    authentication: true
custom_providers:
  acme: {base_url: "https://llm.acme.example"}
"""
SECRET_KEY = "sk-ant-PLAINTEXTSECRET-9876wxyz"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SWITCHPOINT_SECRET", "SWITCHPOINT_DATA_DIR", "SWITCHPOINT_CONFIG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "switchpoint.yaml"
    path.write_text(CONFIG)
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def run(config_file: Path, data_dir: Path) -> Any:
    def invoke(*args: str, stdin: str | None = None) -> Result:
        common = ["--config", str(config_file), "--data-dir", str(data_dir)]
        return CliRunner().invoke(cli.main, [*args, *common], input=stdin)

    return invoke


def snapshot(data_dir: Path) -> auth.Snapshot:
    async def load() -> repo.CredentialRows:
        engine = db.async_engine(db.StoreUrls.resolve(None, data_dir))
        try:
            return await repo.load_credentials(engine, Sealer(load_master_key(data_dir)))
        finally:
            await engine.dispose()

    rows = asyncio.run(load())
    return auth.build_snapshot(rows.version, rows.tokens, rows.keys)


def log_record(i: int, gateway: str = "default") -> dict[str, Any]:
    return {
        "id": f"0190a6f2-{i:04x}-7000-8000-{i:012x}", "created_at": 1_750_000_000.0 + i, "gateway": gateway,
        "account": "acct", "provider": "anthropic", "model": f"claude-{i}", "method": "POST",
        "path": "/v1/messages", "surface": "passthrough", "status_code": 200, "success": True,
        "cached": False, "stream": True, "attempts": 1, "step": None, "tokens_in": 100 + i,
        "tokens_out": 200 + i, "cost": 0.5, "custom_cost": False, "duration_ms": 1234.4, "ttfb_ms": 56.7,
        "event_id": f"evt-{i}", "metadata": {"team": "x"}, "request_body": b"REQUEST-BODY",
        "response_body": b"RESPONSE-BODY", "request_size": 12, "response_size": 13, "error": None,
        "user_agent": "ua",
    }  # fmt: skip


def write_logs(data_dir: Path, records: list[dict[str, Any]]) -> None:
    async def write() -> None:
        urls = db.StoreUrls.resolve(None, data_dir)
        engine = db.async_engine(urls)
        writer = LogWriter(engine, data_dir / "spool" / "test.ndjson")
        await writer.start()
        for r in records:
            writer.submit(r)
        await writer.close()
        await engine.dispose()
        assert writer.counters["written"] == len(records)

    db.migrate(db.StoreUrls.resolve(None, data_dir))
    asyncio.run(write())


def test_tokens_create_prints_a_working_token_last(run: Any, data_dir: Path) -> None:
    result = run("tokens", "create", "--gateway", "prod", "--name", "ci")
    assert result.exit_code == 0, result.output
    token = result.stdout.splitlines()[-1]
    assert token.startswith("swp_") and token not in result.stderr
    assert "shown only once" in result.stderr
    snap = snapshot(data_dir)
    assert auth.check_token(snap, "prod", token)
    assert not auth.check_token(snap, "default", token)


def test_tokens_create_on_open_gateway_notes_it(run: Any) -> None:
    result = run("tokens", "create", "--gateway", "default")
    assert result.exit_code == 0 and "authentication: false" in result.stderr


def test_tokens_create_refuses_unknown_gateway(run: Any, data_dir: Path) -> None:
    result = run("tokens", "create", "--gateway", "nope")
    assert result.exit_code == 2
    assert "unknown gateway 'nope'" in result.stderr and "default, prod" in result.stderr
    assert snapshot(data_dir).tokens == {}


def test_tokens_list_and_revoke(run: Any, data_dir: Path) -> None:
    token = run("tokens", "create", "--gateway", "prod", "--name", "laptop").stdout.splitlines()[-1]
    parsed = auth.parse_token(token)
    assert parsed is not None
    token_id, secret = parsed
    listed = run("tokens", "list")
    assert listed.exit_code == 0 and token_id in listed.stdout and "laptop" in listed.stdout
    assert secret not in listed.stdout
    assert run("tokens", "list", "--gateway", "default").stdout.count(token_id) == 0

    revoked = run("tokens", "revoke", token_id)
    assert revoked.exit_code == 0, revoked.output
    assert not auth.check_token(snapshot(data_dir), "prod", token)
    again = run("tokens", "revoke", token)  # the full token is accepted too
    assert again.exit_code == 1 and "no live token" in again.stderr


def test_keys_set_list_delete(run: Any, data_dir: Path) -> None:
    result = run("keys", "set", "anthropic", stdin=f"  {SECRET_KEY}\n")
    assert result.exit_code == 0, result.output
    assert "PLAINTEXTSECRET" not in result.output and "…wxyz" in result.stdout
    assert (
        run("keys", "set", "anthropic", "--alias", "backup", "--gateway", "prod", stdin="sk-2-abcdefgh").exit_code == 0
    )
    snap = snapshot(data_dir)
    assert auth.stored_key(snap, "default", "anthropic", None) == SECRET_KEY
    assert auth.stored_key(snap, "prod", "anthropic", "backup") == "sk-2-abcdefgh"

    listed = run("keys", "list")
    assert listed.exit_code == 0 and "…wxyz" in listed.stdout and "backup" in listed.stdout
    assert "PLAINTEXTSECRET" not in listed.output
    assert "backup" not in run("keys", "list", "--gateway", "default").stdout

    assert run("keys", "delete", "anthropic", "--alias", "backup", "--gateway", "prod").exit_code == 0
    missing = run("keys", "delete", "anthropic", "--alias", "backup", "--gateway", "prod")
    assert missing.exit_code == 1 and "no anthropic key 'backup'" in missing.stderr
    assert ("prod", "anthropic", "backup") not in snapshot(data_dir).keys


def test_keys_set_refuses_empty_stdin_and_unknown_gateway(run: Any) -> None:
    empty = run("keys", "set", "openai", stdin="  \n")
    assert empty.exit_code == 2 and "no key given" in empty.stderr
    unknown = run("keys", "set", "openai", "--gateway", "nope", stdin="sk-1")
    assert unknown.exit_code == 2 and "unknown gateway" in unknown.stderr


def test_keys_with_a_changed_master_key_fail_clearly(run: Any, data_dir: Path) -> None:
    run("keys", "set", "openai", stdin=SECRET_KEY)
    (data_dir / "master.key").chmod(0o644)
    result = run("keys", "set", "openai", stdin=SECRET_KEY)
    assert result.exit_code == 1 and "chmod 600" in result.stderr and "Traceback" not in result.output


def test_logs_tail_table_and_json(run: Any, data_dir: Path) -> None:
    write_logs(data_dir, [log_record(i, "prod" if i == 4 else "default") for i in range(6)])
    table = run("logs", "tail", "-n", "3")
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert "Model" in lines[0] and "TTFB" in lines[0]
    assert [line.split()[-1] for line in lines[1:]] == [log_record(i)["id"] for i in (3, 4, 5)]
    assert "claude-5" in lines[-1] and "205" in lines[-1] and "1234" in lines[-1] and "57" in lines[-1]

    as_json = run("logs", "tail", "--json", "--gateway", "default")
    rows = [orjson.loads(line) for line in as_json.stdout.splitlines()]
    assert [r["id"] for r in rows] == [log_record(i)["id"] for i in (0, 1, 2, 3, 5)]
    assert rows[0]["metadata"] == {"team": "x"} and rows[0]["stream"] is True
    assert "request_body" not in rows[0] and b"REQUEST-BODY" not in as_json.stdout_bytes


def test_logs_tail_follow(run: Any, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_logs(data_dir, [log_record(0)])
    polls = iter([[log_record(1), log_record(2)], []])

    def step(_seconds: float) -> None:  # each poll of the follow loop: new records, nothing, then Ctrl-C
        records = next(polls, None)
        if records is None:
            raise KeyboardInterrupt
        if records:
            write_logs(data_dir, records)

    monkeypatch.setattr(cli, "_pause", step)
    result = run("logs", "tail", "--follow", "--json")
    assert result.exit_code == 0, result.output
    ids = [orjson.loads(line)["id"] for line in result.stdout.splitlines()]
    assert ids == [log_record(i)["id"] for i in range(3)]


def test_check(run: Any) -> None:
    result = run("check")
    assert result.exit_code == 0 and result.stdout.strip() == "ok: 2 gateways, 1 custom providers"


def test_config_from_env_var(config_file: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHPOINT_CONFIG", str(config_file))
    result = CliRunner().invoke(cli.main, ["check"])
    assert result.exit_code == 0 and "2 gateways" in result.stdout


def test_bad_config_exits_2_with_line_number(tmp_path: Path, data_dir: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("gateways:\n  default:\n    authentication: maybe\n")
    for args in (["check"], ["tokens", "create", "--gateway", "default"], ["logs", "tail"]):
        result = CliRunner().invoke(cli.main, [*args, "--config", str(bad), "--data-dir", str(data_dir)])
        assert result.exit_code == 2, result.output
        assert f"{bad}:3" in result.stderr and "authentication" in result.stderr
        assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)


def test_unsupported_database_url_exits_2(tmp_path: Path, data_dir: Path) -> None:
    cfg = tmp_path / "pg.yaml"
    cfg.write_text("database_url: mysql://u@h/db\n")
    result = CliRunner().invoke(cli.main, ["tokens", "list", "--config", str(cfg), "--data-dir", str(data_dir)])
    assert result.exit_code == 2 and "not supported" in result.stderr


def test_serve_migrates_then_runs_the_app(run: Any, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(app, "run", lambda config, **kw: calls.append((config.data_dir, kw)))
    result = run("serve", "--port", "9999", "--workers", "3")
    assert result.exit_code == 0, result.output
    assert calls == [(data_dir, {"host": "127.0.0.1", "port": 9999, "workers": 3})]
    assert (data_dir / "switchpoint.db").exists()


def test_uncreatable_data_dir_is_a_clean_error(config_file: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    args = ["tokens", "list", "--config", str(config_file), "--data-dir", str(tmp_path / "file" / "data")]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 1 and result.stderr.startswith("error: ") and "Traceback" not in result.output
