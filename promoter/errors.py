"""The exceptions ``promoter`` raises, one tree, each with the exit code the CLI maps it to.

    PromoterError                       base; exit 1 (refused, nothing changed)
    ├── UsageError                      bad options or arguments; exit 2
    │   └── UnknownEnvironment          --env names no environment of the plan
    ├── PlanError                       the plan file is missing, not YAML, or invalid
    ├── ConfigurationError              credentials, profiles, tools (terraform) missing or wrong
    ├── TerraformError                  a terraform command failed (init, plan, show, apply)
    ├── AwsError                        an AWS call failed (access denied, throttled, unreachable)
    │   └── PreconditionFailed          a RevisionId / CodeSha256 guard tripped (someone else changed it)
    ├── LockHeld                        another run holds the environment's lock
    ├── StateUnavailable                the state store (ledger, lock; a directory or S3) cannot be reached
    ├── LockLost                        the run's lock was broken under it; it left the alias alone; exit 4
    ├── RefusedError                    a guard refused to act (destructive plan, stale plan, no approval)
    ├── ReleaseFailed                   a release failed and the alias was rolled back cleanly; exit 3
    ├── Interrupted                     Ctrl-C / SIGTERM stopped a run; exit 3 if rolled back, else 130
    ├── RollbackFailed                  a rollback failed; manual action needed; exit 4
    └── WaitingForApproval              a pipeline paused at a manual step; exit 5 (``--resume`` goes on)

The engine raises these; only ``promoter.cli`` turns them into messages and exit codes.
"""

from __future__ import annotations

from promoter.exitcodes import ExitCode


class PromoterError(Exception):
    """Base of every error the engine reports to a user. ``details`` is machine-readable context (a run's
    record) that ``--json`` adds to the error document."""

    exit_code: ExitCode = ExitCode.REFUSED
    details: dict | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(PromoterError):
    exit_code = ExitCode.USAGE


class UnknownEnvironment(UsageError):
    def __init__(self, env: str | None, known: list[str]) -> None:
        known_text = ", ".join(known)
        if env:
            message = f"unknown environment {env!r}; the plan defines: {known_text}"
        else:
            message = f"no environment given; pass --env or set PROMOTER_ENV to one of: {known_text}"
        super().__init__(message, hint=f"for example: --env {known[0]}" if known else None)
        self.env = env
        self.known = known


class PlanError(PromoterError):
    """The plan is missing, unreadable or invalid. ``problems`` holds one line per problem."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(f"{path}: {p}" for p in problems))


class ConfigurationError(PromoterError):
    pass


class TerraformError(PromoterError):
    pass


class AwsError(PromoterError):
    def __init__(self, message: str, *, code: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code


class PreconditionFailed(AwsError):
    pass


class LockHeld(PromoterError):
    def __init__(self, env: str, holder: dict, *, unfinished: dict | None = None) -> None:
        who = holder.get("who", "unknown")
        since = holder.get("since", "unknown time")
        pid = holder.get("pid", "?")
        host = holder.get("host", "?")
        message = f"environment {env!r} is locked by {who} (pid {pid} on {host}) since {since}"
        hint = f"wait for that run to end, or if it is dead: promoter lock break --env {env}"
        if holder.get("lease_expired"):
            message += ", whose lease ran out (it stopped renewing it)"
            hint = f"promoter lock break --env {env}"
        if holder.get("stale"):
            if not holder.get("lease_expired"):
                message += ", which is no longer running"
            hint = f"promoter lock break --env {env}"
            if unfinished is not None:
                message += f"; its run {unfinished['run_id']} is unfinished"
                if unfinished.get("kind_of_run") == "deploy":
                    hint += (f", then continue the run with promoter deploy --env {env} --resume or roll it back "
                             f"with promoter abort --env {env}")
                else:
                    hint += f", then check the alias with promoter status --env {env}"
        super().__init__(message, hint=hint)
        self.env = env
        self.holder = holder
        self.unfinished = unfinished


class StateUnavailable(PromoterError):
    """The state store (ledger, lock) could not be read or written, after the SDK's retries."""


class LockLost(PromoterError):
    """The run's lock was broken while it ran; it stopped without touching the alias again."""

    exit_code = ExitCode.ROLLBACK_FAILED


class RefusedError(PromoterError):
    pass


class ReleaseFailed(PromoterError):
    exit_code = ExitCode.ROLLED_BACK


class Interrupted(PromoterError):
    """A run was interrupted (Ctrl-C, SIGTERM); the message says where the alias was left."""

    exit_code = ExitCode.INTERRUPTED

    def __init__(self, message: str, *, hint: str | None = None, exit_code: int | None = None) -> None:
        super().__init__(message, hint=hint)
        if exit_code is not None:
            self.exit_code = ExitCode(exit_code)


class RollbackFailed(PromoterError):
    exit_code = ExitCode.ROLLBACK_FAILED


class WaitingForApproval(PromoterError):
    """A promotion stopped at a manual step; ``command`` records the approval, then ``--resume`` goes on."""

    exit_code = ExitCode.WAITING

    def __init__(self, message: str, *, command: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.command = command
