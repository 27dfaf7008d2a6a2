"""Wrong numbers and names on the release commands are usage errors (exit 2) before anything is built or called."""

from __future__ import annotations

import pytest

from promoter.cli.app import app


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["deploy", "--env", "sit", "--dry-run", "--bake", "-5"], "--bake -5: must be 0 or more seconds"),
        (["deploy", "--env", "sit", "--dry-run", "--analysis-interval", "0"], "--analysis-interval 0: must be more"),
        (["deploy", "--env", "sit", "--dry-run", "--target", "bogus"], "--target 'bogus': choose one of: lambda"),
        (["deploy", "--env", "sit", "--lock-wait", "-1", "--yes"], "--lock-wait -1: must be 0 or more"),
        (["deploy", "--env", "sit", "--dry-run", "--env-var", "NOEQUALS"], "expected KEY=VALUE"),
        (["deploy", "--env", "sit", "--dry-run", "--on-interrupt", "pause"], "must be rollback or hold"),
        (["rollback", "--env", "sit", "--to", "v1.0.0", "--lock-wait", "-2", "--yes"], "--lock-wait -2"),
        (["abort", "--env", "sit", "--lock-wait", "-2", "--yes"], "--lock-wait -2"),
    ],
)
def test_bad_values_are_usage_errors_before_any_call(runner, monkeypatch, args, message):
    # GIVEN no reachable AWS endpoint: an error raised after a call would name the endpoint instead
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")

    result = runner.invoke(app, args)

    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_history_refuses_a_negative_limit(runner, tmp_path):
    result = runner.invoke(app, ["history", "--env", "sit", "--limit", "-1", "--ledger-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "--limit" in result.output
