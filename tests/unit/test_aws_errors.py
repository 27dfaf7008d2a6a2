"""AWS errors told as what happened and what to do, with the plan's profile in the login hints."""

from __future__ import annotations


def test_an_expired_sso_session_says_log_in_again_with_the_plans_profile():
    import botocore.exceptions as bce

    from promoter.adapters.aws import translate

    error = translate(bce.SSOTokenLoadError(error_msg="Token for my-sso does not exist"), "reading the caller",
                      profile="Tebogo-sit")
    assert error.code == "SSOLoginRequired"
    assert "the AWS SSO session has expired or was never started" in error.message
    assert "SSOTokenLoadError" not in error.message
    assert error.hint.startswith("log in again: aws sso login --profile Tebogo-sit")
    missing = translate(bce.NoCredentialsError(), "reading the caller", profile="Tebogo-prod")
    assert "aws sso login --profile Tebogo-prod" in missing.hint
