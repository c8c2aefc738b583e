"""`switchpoint routes ...` through click's runner: push, list, versions, deploy, rollback, explain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from click.testing import CliRunner, Result

from switchpoint import cli
from switchpoint.store import db
from switchpoint.store.routes import RouteRepo
from tests.routing.builders import cond, end, model, rate, start

ELEMENTS = [
    start("is_paid"),
    cond("is_paid", {"metadata.plan": "paid"}, "m_big", "quota"),
    rate("quota", "m_small", "end", key="metadata.user_id", limit=1, window=3600),
    model("m_big", fallback="m_small"),
    model("m_small"),
    end(),
]
CONFIG = {
    "gateways": {"default": {}, "prod": {}},
    "routes": {"declared": {"elements": [start("m"), model("m"), end()]}},
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SWITCHPOINT_SECRET", "SWITCHPOINT_DATA_DIR", "SWITCHPOINT_CONFIG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def run(tmp_path: Path) -> Any:
    config_file = tmp_path / "switchpoint.yaml"
    config_file.write_text(yaml.safe_dump(CONFIG))

    def invoke(*args: str, code: int = 0) -> Result:
        common = ["--config", str(config_file), "--data-dir", str(tmp_path / "data")]
        result = CliRunner().invoke(cli.main, ["routes", *args, *common])
        assert result.exit_code == code, result.output + (result.stderr if result.stderr_bytes else "")
        return result

    return invoke


@pytest.fixture
def repo(tmp_path: Path) -> Any:
    def make() -> RouteRepo:
        return RouteRepo(db.sync_engine(db.StoreUrls.resolve(None, tmp_path / "data")))

    return make


def write(tmp_path: Path, name: str, doc: Any) -> str:
    path = tmp_path / name
    path.write_text(orjson.dumps(doc).decode() if name.endswith(".json") else yaml.safe_dump(doc))
    return str(path)


def test_push_deploy_rollback_round_trip(run: Any, repo: Any, tmp_path: Path) -> None:
    first = write(tmp_path, "support.json", {"name": "support", "elements": ELEMENTS})
    result = run("push", first)
    assert "Created route 'support' on gateway 'default': version 1 (" in result.stdout and "deployed" in result.stdout
    second = write(tmp_path, "v2.yaml", [start("m"), model("m", model="gpt-4o"), end()])
    result = run("push", second, "--name", "support", "--no-deploy", "--comment", "smaller")
    assert "version 2 (" in result.stdout and "not deployed" in result.stdout
    assert "switchpoint routes deploy support 2" in result.stderr

    routes = repo()
    live = routes.find_route("default", "support")
    assert live.version.number == 1
    run("deploy", "support", "2")
    assert routes.find_route("default", "support").version.number == 2
    result = run("versions", "support")
    lines = [line for line in result.stdout.splitlines() if line.strip().startswith(("│ 1", "│ 2", "1 ", "2 "))]
    assert len(lines) == 2 and "live" in lines[0] and "smaller" in lines[0]
    result = run("rollback", "support")
    assert "to version 1 (" in result.stdout and routes.find_route("default", "support").version.number == 1
    assert "no version older" in run("rollback", "support", code=1).stderr
    version_id = routes.list_versions("default", routes.find_route("default", "support").id)[0].version_id
    run("deploy", "support", version_id)  # by id, too
    assert routes.find_route("default", "support").version.number == 2
    routes._engine.dispose()


def test_list_shows_config_and_stored_routes(run: Any, tmp_path: Path) -> None:
    run("push", write(tmp_path, "r.json", {"elements": ELEMENTS}), "--name", "support", "--gateway", "prod")
    result = run("list")
    rows = [line for line in result.stdout.splitlines() if "declared" in line or "support" in line]
    assert len(rows) == 3  # declared on both gateways, support on prod
    assert all("config" in r for r in rows if "declared" in r) and "store" in next(r for r in rows if "support" in r)
    assert "support" not in run("list", "--gateway", "default").stdout


def test_push_reports_every_problem_and_refuses_config_routes(run: Any, tmp_path: Path) -> None:
    bad = [start("m"), model("m", provider="nope", fallback="gone"), end()]
    result = run("push", write(tmp_path, "bad.json", {"name": "bad", "elements": bad}), code=2)
    assert "route 'bad' is invalid" in result.stderr
    assert "elements.1.outputs.fallback.elementId (element 'm')" in result.stderr
    assert "elements.1.properties.provider (element 'm'): unknown provider 'nope'" in result.stderr
    assert "needs a name" in run("push", write(tmp_path, "anon.json", {"elements": ELEMENTS}), code=2).stderr
    assert (
        "read-only" in run("push", write(tmp_path, "d.json", {"name": "declared", "elements": ELEMENTS}), code=2).stderr
    )
    assert "read-only" in run("deploy", "declared", "1", code=2).stderr
    assert (
        "unknown gateway"
        in run("push", write(tmp_path, "g.json", ELEMENTS), "--name", "x", "--gateway", "nope", code=2).stderr
    )
    assert "no route 'ghost'" in run("deploy", "ghost", "1", code=1).stderr
    run("push", write(tmp_path, "ok.json", ELEMENTS), "--name", "ok")
    assert "has no version '7'" in run("deploy", "ok", "7", code=1).stderr
    (tmp_path / "broken.yaml").write_text("elements: [\n")
    assert "neither JSON nor YAML" in run("push", str(tmp_path / "broken.yaml"), code=2).stderr


def test_explain(run: Any, tmp_path: Path) -> None:
    run("push", write(tmp_path, "r.json", {"name": "support", "elements": ELEMENTS}))
    result = run("explain", "support", "--metadata", '{"plan": "paid"}', "--header", "X-Team=a", "--json")
    steps = orjson.loads(result.stdout)
    assert [s["element_id"] for s in steps] == ["start", "is_paid", "m_big", "end"]
    result = run("explain", "support", "--metadata", '{"plan": "free", "user_id": "u1"}')
    assert "quota" in result.stdout and "m_small" in result.stdout and "assumed under" in result.stderr
    result = run("explain", "declared", "--json")
    assert [s["element_id"] for s in orjson.loads(result.stdout)] == ["start", "m", "end"]
    assert "must be a JSON object" in run("explain", "support", "--metadata", "[1]", code=2).stderr
    assert "NAME=VALUE" in run("explain", "support", "--header", "novalue", code=2).stderr
