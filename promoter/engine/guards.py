"""Guards every acting command runs first."""

from __future__ import annotations

from collections.abc import Callable

from promoter.errors import RefusedError


def ensure_account(env: str, expected: str, caller_account: Callable[[], str]) -> None:
    """Refuse when the credentials belong to another account than the plan names for ``env``.

    The runbook's "verify AWS profile: aws sts get-caller-identity", made a precondition: a shell still
    logged in to SIT cannot plan, apply, deploy or roll back in PROD.
    """
    actual = caller_account()
    if actual != expected:
        raise RefusedError(
            f"the credentials are for account {actual}, but {env} is account {expected}: "
            "refusing to touch it; nothing was changed",
            hint=f"log in to the {env} account (its profile in the plan, or --profile)",
        )


def sts_account(aws) -> Callable[[], str]:
    """The caller's account, read with ``sts get-caller-identity`` through an ``AwsSessionFactory``."""

    def read() -> str:
        from promoter.adapters.aws import translate

        try:
            return str(aws.client("sts").get_caller_identity()["Account"])
        except Exception as exc:
            raise translate(exc, "reading the caller identity (sts get-caller-identity)",
                            profile=getattr(aws, "plan_profile", None)) from None

    return read
