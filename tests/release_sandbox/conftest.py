"""A fresh sandbox per test (about 3 s to start), a compressed test copy of the plan, an artifact built once."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from promoter.plan import load_plan

ENV = "sit"


def compressed_plan():
    """The real plan with canary analysis made fit for seconds-long bakes: fewer invocations for a verdict,
    a shorter extension, still long enough for the 59 canary invocations a pass needs at 10 % of 30 req/s.
    Thresholds and steps stay as the plan says."""
    plan = load_plan()
    canary = plan.canary.model_copy(update={"min_invocations": 5, "max_extension_seconds": 40})
    return plan.model_copy(update={"canary": canary})


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """v1.1.0 for the sandbox (target lambda, as AWS gets it), and a v1.2.0 whose handler raises on every
    request."""
    from promoter.engine.build import build

    out = tmp_path_factory.mktemp("dist")
    good = build(repo=Path(__file__).resolve().parents[2], release="v1.1.0", target="lambda", out_dir=out)
    crashing = out / "campaigns_lambda-v1.2.0-crash.zip"
    with zipfile.ZipFile(good.path) as src, zipfile.ZipFile(crashing, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "campaigns_lambda/handler.py":
                data = b"def lambda_handler(event, context):\n    raise RuntimeError('boom on every request')\n"
            elif info.filename == "campaigns_lambda/RELEASE":
                data = b"v1.2.0\n"
            dst.writestr(info, data)
    return SimpleNamespace(good=Path(good.path), crashing=crashing)


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    from promoter.sandbox.manager import Sandbox

    plan = compressed_plan()
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(yaml.safe_dump(plan.model_dump(mode="json"), sort_keys=False))
    sb = Sandbox.up(plan=plan, env=ENV, state_dir=tmp_path / "sandbox", plan_path=plan_file)
    try:
        for key, value in sb.env_vars().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("PROMOTER_PLAN", str(plan_file))
        monkeypatch.setenv("PROMOTER_HOME", str(tmp_path / "home"))
        yield SimpleNamespace(sb=sb, plan=plan, plan_file=plan_file, home=tmp_path / "home",
                              api=sb.env_vars()["PROMOTER_API_URL"], names=plan.names(ENV),
                              subprocess_env={**os.environ})
    finally:
        sb.down()


def zip_bytes(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()
