"""`promoter ci`: the plan's names for a job, the GitHub environment reviewers' approvals recorded under their
identities, and job summaries.

GitHub's REST API cannot be reached here; a loopback HTTP server answers the run approvals endpoint with the
documented shape of its reply (a list of {state, comment, user: {login}, environments: [{name}]}), over a real
socket, so the client's request (path, token, headers) and its parsing are exercised for real.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from promoter.engine.approvals import caller_identity, find_approval
from promoter.engine.ci import summary_markdown
from promoter.engine.ledger import Ledger

ROOT = Path(__file__).resolve().parents[2]
SHA = "c" * 64


class FakeGitHub:
    """Answers GET /repos/{repo}/actions/runs/{id}/approvals with ``reply`` and remembers the requests."""

    def __init__(self, reply, status: int = 200) -> None:
        self.reply, self.status, self.requests = reply, status, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append((self.path, dict(self.headers)))
                body = json.dumps(outer.reply).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_exc):
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


def _approval(login, state="approved", envs=("prod",), comment=""):
    return {"state": state, "comment": comment, "user": {"login": login, "id": 1},
            "environments": [{"id": 7, "name": e} for e in envs]}


@pytest.fixture
def github_run(monkeypatch):
    def configure(server: FakeGitHub):
        monkeypatch.setenv("GITHUB_API_URL", server.url)
        monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.example")
        monkeypatch.setenv("GITHUB_REPOSITORY", "team/campaigns")
        monkeypatch.setenv("GITHUB_RUN_ID", "4242")
        monkeypatch.setenv("GH_TOKEN", "job-token")
    return configure


def _approvals(runner, cli, ledger, *extra):
    return runner.invoke(cli, ["ci", "approvals", "--env", "prod", "--release", "v1.1.0-prod", "--sha256", SHA,
                               "--repo", str(ROOT), "--ledger-dir", str(ledger), "--json", *extra])


def test_outputs_are_the_plans_names_for_the_job(runner, cli, tmp_path):
    result = runner.invoke(cli, ["ci", "outputs", "--env", "prod", "--repo", str(ROOT), "--allow-local-state",
                                 "--ledger-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["role_arn"] == "arn:aws:iam::093646564004:role/promoter-deploy-prod"
    assert doc["plan_role_arn"] == "arn:aws:iam::093646564004:role/promoter-plan-prod"
    assert (doc["region"], doc["profile"], doc["github_environment"]) == ("af-south-1", "Tebogo-prod", "prod")
    assert doc["concurrency_group"] == "promoter-prod" and doc["state_shared"] == "false"

    lines = runner.invoke(cli, ["ci", "outputs", "--env", "sit", "--prefix", "sit_", "--repo", str(ROOT),
                                "--allow-local-state", "--ledger-dir", str(tmp_path)])
    assert lines.exit_code == 0
    pairs = dict(line.split("=", 1) for line in lines.stdout.splitlines())
    assert pairs["sit_account_id"] == "815856636111" and pairs["sit_profile"] == "Tebogo-sit"


def test_outputs_refuse_a_ledger_a_runner_would_throw_away(runner, cli, tmp_path):
    result = runner.invoke(cli, ["ci", "outputs", "--env", "prod", "--repo", str(ROOT), "--ledger-dir",
                                 str(tmp_path), "--json"])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["error"] == "ConfigurationError" and "local directory" in doc["message"]
    assert "PROMOTER_STATE" in doc["hint"]


def test_outputs_with_a_shared_state_bucket(runner, cli, tmp_path):
    result = runner.invoke(cli, ["--state", "s3://team-state/promoter", "ci", "outputs", "--env", "prod", "--repo",
                                 str(ROOT), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["state_shared"] == "true" and "team-state" in doc["state"]


def test_reviewers_approvals_are_recorded_as_the_plans_gates_under_their_github_identities(
        runner, cli, tmp_path, github_run):
    reply = [_approval("alice", comment="CAB approved"), _approval("bob", state="rejected"),
             _approval("carol", envs=("sit",)), _approval("alice")]
    with FakeGitHub(reply) as gh:
        github_run(gh)
        result = _approvals(runner, cli, tmp_path, "--change-request", "CHG-1234")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["reviewers"] == ["alice"]  # bob rejected, carol approved another environment; alice counted once
    recorded = {(r["gate"], r["approver"], r["identity"], r["ref"]) for r in doc["recorded"]}
    assert recorded == {("sit-signoff", "alice", "github:alice", "https://github.example/team/campaigns/actions/runs/4242"),
                        ("change-request", "alice", "github:alice", "CHG-1234")}
    assert doc["skipped"] == ["terraform-approval: no saved terraform plan in this job"]
    path, headers = gh.requests[0]
    assert path == "/repos/team/campaigns/actions/runs/4242/approvals"
    assert headers["Authorization"] == "Bearer job-token"

    # bound to the release and the artifact, and four eyes compares people: alice cannot approve her own run
    records = Ledger(tmp_path).records("prod", kind="approval")
    mine = find_approval(records, gate="sit-signoff", release="v1.1.0-prod", artifact_sha256=SHA, four_eyes=True,
                         started_by="github:alice")
    assert mine.record is None and "four eyes" in mine.rejected[0]
    other = find_approval(records, gate="sit-signoff", release="v1.1.0-prod", artifact_sha256=SHA, four_eyes=True,
                          started_by="github:dave")
    assert other.record["identity"] == "github:alice"
    wrong = find_approval(records, gate="sit-signoff", release="v1.1.0-prod", artifact_sha256="d" * 64,
                          four_eyes=True, started_by="github:dave")
    assert wrong.record is None


def test_a_change_request_gate_needs_its_number(runner, cli, tmp_path, github_run):
    with FakeGitHub([_approval("alice")]) as gh:
        github_run(gh)
        result = _approvals(runner, cli, tmp_path)
    assert result.exit_code == 2
    assert "--change-request" in json.loads(result.stdout)["message"]


def test_no_reviewer_is_an_error_unless_the_environment_has_none(runner, cli, tmp_path, github_run):
    with FakeGitHub([]) as gh:
        github_run(gh)
        refused = _approvals(runner, cli, tmp_path, "--change-request", "CHG-1")
        allowed = _approvals(runner, cli, tmp_path, "--no-reviewers-ok")
    assert refused.exit_code == 1
    assert "required reviewers" in json.loads(refused.stdout)["hint"]
    assert allowed.exit_code == 0
    assert json.loads(allowed.stdout)["recorded"] == []
    assert Ledger(tmp_path).records("prod", kind="approval") == []


def test_a_token_without_permission_says_which_permission(runner, cli, tmp_path, github_run):
    with FakeGitHub({"message": "Resource not accessible by integration"}, status=403) as gh:
        github_run(gh)
        result = _approvals(runner, cli, tmp_path, "--change-request", "CHG-1")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert "403" in doc["message"] and "actions: read" in doc["hint"]


def test_outside_a_workflow_run_it_says_what_is_missing(runner, cli, tmp_path):
    result = _approvals(runner, cli, tmp_path, "--change-request", "CHG-1")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert "GITHUB_REPOSITORY" in doc["message"] and "GH_TOKEN" in doc["message"]


def test_a_bad_sha256_is_a_usage_error(runner, cli, tmp_path):
    result = runner.invoke(cli, ["ci", "approvals", "--env", "prod", "--release", "v1", "--sha256", "abc",
                                 "--repo", str(ROOT), "--ledger-dir", str(tmp_path), "--json"])
    assert result.exit_code == 2 and "--dry-run --json" in json.loads(result.stdout)["hint"]


def test_in_a_github_job_the_caller_is_the_github_user(monkeypatch):
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_ACTOR", "alice")
    monkeypatch.setenv("GITHUB_TRIGGERING_ACTOR", "bob")  # bob re-ran alice's run: bob started this attempt
    assert caller_identity(None) == "github:bob"
    monkeypatch.delenv("GITHUB_ACTIONS")
    assert caller_identity(None) != "github:bob"


def test_summary_of_a_paused_promotion_shows_the_command_that_goes_on(runner, cli, tmp_path):
    doc = {"ok": False, "exit_code": 5, "error": "WaitingForApproval", "message": "waiting for sit-signoff",
           "hint": None, "pipeline": {
               "pipeline_id": "20261201T1-abc", "env": "prod", "release": "v1.1.0-prod", "artifact_sha256": SHA,
               "started_by": "github:dave", "outcome": "waiting", "reason": "waiting for sit-signoff",
               "waiting_for": {"step": "prod-promotion/change-request",
                               "command": "promoter approve --env prod --gate change-request --approver NAME"},
               "steps": [{"step_key": "prod-promotion/preflight", "status": "passed", "detail": "22 checks | ok"}]}}
    text = summary_markdown(doc, title="Promote")
    assert text.startswith("## Promote")
    assert "**Waiting for an approval**" in text and "promoter approve --env prod --gate change-request" in text
    assert "| prod-promotion/preflight | passed | 22 checks \\| ok |" in text
    path = tmp_path / "promote.json"
    path.write_text(json.dumps(doc))
    report = tmp_path / "report.md"
    report.write_text("# Evidence\nall verified")
    result = runner.invoke(cli, ["ci", "summary", str(path), "--report", str(report)])
    assert result.exit_code == 0 and "all verified" in result.stdout and "<details>" in result.stdout


def test_summary_of_a_failure_and_of_a_terraform_review():
    failed = summary_markdown({"ok": False, "exit_code": 3, "error": "ReleaseFailed", "message": "rolled back",
                               "hint": "see promoter history"})
    assert "**Failed** (exit 3, ReleaseFailed): rolled back" in failed and "Next: see promoter history" in failed
    review = summary_markdown({"env": "prod", "sha256": SHA, "workspace": "prod", "review": {
        "counts": {"create": 2, "delete": 1}, "blocked": True,
        "changes": [{"address": "aws_dynamodb_table.t", "actions": ["delete"], "protected": True, "blocking": True}]}})
    assert "is BLOCKED" in review and "| aws_dynamodb_table.t | delete | yes | yes |" in review


def test_summary_refuses_what_is_not_a_json_document(runner, cli, tmp_path):
    path = tmp_path / "x.json"
    path.write_text("not json")
    result = runner.invoke(cli, ["ci", "summary", str(path)])
    assert result.exit_code == 2
