"""Terraform for one environment: plan, review, approve, apply, in that order and nothing skipped.

The runbook's steps become stages that each leave a ledger record the next one checks:

1. ``plan_infra``: terraform version check, ``init`` against the environment's backend, workspace select
   (created only when asked), ``plan -out=<env>.tfplan``, ``show -json`` and :func:`review_plan`. Records
   kind ``infra-plan`` with the plan file's sha256, the workspace, the creation time and the review summary.
2. ``approve_plan``: verifies the saved plan (:func:`verify_saved_plan`: same sha256 as a recorded plan, not
   older than ``terraform.max_plan_age_minutes``, made in the workspace selected now), reviews it again and
   refuses a blocked review unless destruction is explicitly allowed. Records kind ``approval``, gate
   ``terraform-approval``, with the sha256 and the approver.
3. ``apply_plan``: verifies the saved plan again, requires an approval of exactly that sha256, copies the file
   aside, checks the copy's hash, and applies the copy (``apply -input=false <copy>``). Records
   ``infra-apply`` with the outcome.

Before any of these, :func:`validate_infra` checks the configuration as it ships, in a copy whose backend is local
(:meth:`InfraSettings.with_local_backend`, which also drops the S3 ``-backend-config``): ``fmt -check``, ``init``,
``validate``, ``terraform test``, ``plan`` and the misconfiguration scanners (the :class:`Scanner` port), every
problem located in the shipped files. It records nothing in the ledger.

:func:`review_plan` is the pure decision on Terraform's plan JSON (``terraform show -json``): counts by action,
every delete, replace and forget with its reason, and blockers for deletes and replaces of protected
(stateful) resources. Everything else here gathers facts through the :class:`TerraformRunner` port and the
ledger. :func:`record_gate_approval` records the plan's other manual gates (``promoter approve``).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from promoter.errors import ConfigurationError, RefusedError, TerraformError, UsageError

if TYPE_CHECKING:
    from promoter.engine.ledger import Ledger
    from promoter.plan.models import Plan

TERRAFORM_GATE = "terraform-approval"
LOCAL_BACKEND_OVERRIDE = "promoter_local_backend_override.tf"
SUPPORTED_FORMAT_MAJORS = ("0", "1")  # Terraform 0.12-1.0 print "0.x"; 1.1 and later "1.x"
ACTIONS = ("create", "update", "delete", "replace", "read", "no-op", "forget")
DESTRUCTIVE = ("delete", "replace")

Now = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


# -- the port --------------------------------------------------------------------------------------------------
class TerraformRunner(Protocol):
    """Runs terraform in the configuration's directory (``promoter.adapters.terraform.TerraformCli``)."""

    def version(self) -> str: ...

    def init(self, backend_config: str | None = None) -> None: ...

    def workspaces(self) -> tuple[str, list[str]]: ...

    def current_workspace(self) -> str: ...

    def select_workspace(self, name: str) -> None: ...

    def new_workspace(self, name: str) -> None: ...

    def plan(self, out: str, var_file: str | None = None) -> bool: ...

    def show_json(self, plan_file: str) -> dict[str, Any]: ...

    def apply(self, plan_file: str) -> None: ...


# -- review: pure decisions on plan JSON -----------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    """One resource change of a plan that deserves a reviewer's eye (delete, replace, forget)."""

    address: str
    type: str
    action: str
    actions: tuple[str, ...]
    action_reason: str | None = None
    replace_paths: tuple[tuple[Any, ...], ...] = ()
    deposed: str | None = None
    protected: bool = False
    blocking: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["actions"] = list(self.actions)
        data["replace_paths"] = [list(p) for p in self.replace_paths]
        return data


@dataclass(frozen=True)
class Review:
    format_version: str
    terraform_version: str | None
    counts: dict[str, int]
    changes: tuple[Change, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def blockers(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.blocking)

    @property
    def blocked(self) -> bool:
        return bool(self.blockers)

    @property
    def has_changes(self) -> bool:
        return any(n for action, n in self.counts.items() if action not in {"no-op", "read"})

    def summary(self) -> dict[str, Any]:
        """What the ledger keeps of a review."""
        return {
            "counts": dict(self.counts),
            "blocked": self.blocked,
            "blockers": [c.address for c in self.blockers],
            "destructive": [f"{c.action} {c.address}" for c in self.changes if c.action in DESTRUCTIVE],
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "terraform_version": self.terraform_version,
            "counts": dict(self.counts),
            "changes": [c.to_dict() for c in self.changes],
            "blockers": [c.address for c in self.blockers],
            "blocked": self.blocked,
            "warnings": list(self.warnings),
        }


def classify(actions: Iterable[str]) -> str:
    """Terraform's ``change.actions`` list -> one of :data:`ACTIONS` (or the joined list when unknown)."""
    acts = tuple(actions)
    if acts in {("delete", "create"), ("create", "delete")}:
        return "replace"
    if len(acts) == 1 and acts[0] in ACTIONS:
        return acts[0]
    return "+".join(acts) or "no-op"


def _protected(address: str, rtype: str, types: frozenset[str], addresses: tuple[str, ...]) -> bool:
    if rtype in types:
        return True
    # "null_resource.x" protects null_resource.x[0] and null_resource.x["k"]; "module.db" protects its contents
    return any(address == a or address.startswith((a + "[", a + ".")) for a in addresses)


def review_plan(
    plan_json: dict[str, Any], protected_types: Iterable[str] = (), protected_addresses: Iterable[str] = ()
) -> Review:
    """Review a plan in Terraform's JSON output format; raises :class:`RefusedError` on a format it cannot read.

    Deletes and replaces of managed resources whose type is in ``protected_types`` or whose address is in
    ``protected_addresses`` are blockers. Forgets (Terraform 1.7+: removed from state, left running) are listed
    but do not block. Unknown action combinations are listed and, when they include a delete, treated as one.
    """
    if not isinstance(plan_json, dict):
        raise RefusedError("the plan JSON is not an object")
    version = plan_json.get("format_version")
    if not isinstance(version, str) or not re.fullmatch(r"\d+\.\d+", version):
        raise RefusedError(f"the plan JSON has no readable format_version ({version!r}); is it `terraform show -json`?")
    if version.split(".")[0] not in SUPPORTED_FORMAT_MAJORS:
        raise RefusedError(
            f"plan JSON format_version {version} is not supported (this review reads "
            f"{', '.join(m + '.x' for m in SUPPORTED_FORMAT_MAJORS)}); refusing to judge a plan it may misread",
            hint="use a terraform release whose plan JSON format is 1.x, or upgrade promoter",
        )
    if "resource_changes" not in plan_json and "planned_values" not in plan_json:
        raise RefusedError("the JSON holds no resource_changes or planned_values: it is not a saved plan's JSON")
    if plan_json.get("errored"):
        raise RefusedError("terraform marked this plan as errored; it cannot be applied")

    types = frozenset(protected_types)
    addresses = tuple(protected_addresses)
    counts = dict.fromkeys(ACTIONS, 0)
    changes: list[Change] = []
    warnings: list[str] = []
    resource_changes = plan_json.get("resource_changes") or []
    if not isinstance(resource_changes, list):
        raise RefusedError("the plan JSON's resource_changes is not a list; refusing to judge a plan it may misread")
    for index, rc in enumerate(resource_changes):
        change = rc.get("change") if isinstance(rc, dict) else None
        raw_actions = change.get("actions") if isinstance(change, dict) else None
        if not isinstance(raw_actions, list) or not raw_actions or not all(isinstance(a, str) for a in raw_actions):
            where = rc.get("address") if isinstance(rc, dict) and rc.get("address") else f"resource_changes[{index}]"
            raise RefusedError(
                f"{where}: no readable change.actions in the plan JSON; refusing to judge a plan it may misread",
                hint="review the output of `terraform show -json PLANFILE` itself, not an edited copy",
            )
        acts = tuple(raw_actions)
        action = classify(acts)
        counts[action] = counts.get(action, 0) + 1
        address = str(rc.get("address", "?"))
        rtype = str(rc.get("type", ""))
        destructive = action in DESTRUCTIVE or (action not in ACTIONS and "delete" in acts)
        if action not in ACTIONS:
            warnings.append(f"{address}: unknown action combination {list(acts)}")
        if not destructive and action != "forget" and action in ACTIONS:
            continue
        managed = rc.get("mode", "managed") == "managed"
        protected = managed and _protected(address, rtype, types, addresses)
        changes.append(
            Change(
                address=address,
                type=rtype,
                action=action,
                actions=acts,
                action_reason=rc.get("action_reason"),
                replace_paths=tuple(tuple(p) for p in change.get("replace_paths") or ()),
                deposed=rc.get("deposed"),
                protected=protected,
                blocking=protected and destructive,
            )
        )
    return Review(
        format_version=version,
        terraform_version=plan_json.get("terraform_version"),
        counts=counts,
        changes=tuple(changes),
        warnings=tuple(warnings),
    )


def check_version(found: str, minimum: str) -> None:
    """Refuse a terraform older than ``minimum`` (``1.6.0-beta1`` counts as 1.6.0)."""
    if _version_tuple(found) < _version_tuple(minimum):
        raise ConfigurationError(
            f"terraform {found} is too old: the plan needs terraform >= {minimum}",
            hint=f"install terraform {minimum} or newer, or point PROMOTER_TERRAFORM at one",
        )


def _version_tuple(text: str) -> tuple[int, ...]:
    match = re.match(r"v?(\d+)\.(\d+)\.(\d+)", text.strip())
    if not match:
        raise ConfigurationError(f"cannot read terraform version {text!r}")
    return tuple(int(p) for p in match.groups())


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- settings --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InfraSettings:
    """Everything the infra stages need for one environment, resolved once from the plan."""

    env: str
    workspace: str
    directory: Path
    plan_file: Path
    var_file: Path | None = None
    backend_config: Path | None = None
    min_version: str = "1.0.0"
    max_plan_age_minutes: int = 60
    protected_types: tuple[str, ...] = ()
    protected_addresses: tuple[str, ...] = ()

    @classmethod
    def from_plan(
        cls, plan: Plan, env: str, *, directory: Path | None = None, plan_file: Path | None = None,
        repo: Path | None = None,
    ) -> InfraSettings:
        spec = plan.environment(env)
        tf = plan.terraform
        root = resolve_directory(directory, tf.directory, repo)
        var_file = root / "env" / f"{env}.tfvars"
        backend = root / "env" / f"{env}.backend.hcl"
        return cls(
            env=env,
            workspace=spec.terraform_workspace,
            directory=root,
            plan_file=(Path(plan_file).resolve() if plan_file else root / f"{env}.tfplan"),
            var_file=var_file if var_file.exists() else None,
            backend_config=backend if backend.exists() else None,
            min_version=tf.min_version,
            max_plan_age_minutes=tf.max_plan_age_minutes,
            protected_types=tuple(tf.protected_resource_types),
            protected_addresses=tuple(tf.protected_addresses),
        )

    def review(self, plan_json: dict[str, Any]) -> Review:
        return review_plan(plan_json, self.protected_types, self.protected_addresses)

    def with_local_backend(self, dest: Path) -> InfraSettings:
        """A copy of the configuration in ``dest`` whose state stays there: the S3 backend overridden by a local
        one, and no ``-backend-config`` (whose S3 arguments a local backend refuses). Everything else, the
        environment's tfvars included, is the configuration as it ships."""
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(self.directory, dest, ignore=shutil.ignore_patterns(
            ".terraform", ".terraform.lock.hcl", "*.tfplan", "terraform.tfstate*", ".build"))
        (dest / LOCAL_BACKEND_OVERRIDE).write_text('terraform {\n  backend "local" {}\n}\n', encoding="utf-8")
        var_file = dest / self.var_file.relative_to(self.directory) if self.var_file else None
        return replace(self, directory=dest, plan_file=dest / self.plan_file.name, var_file=var_file,
                       backend_config=None)


def resolve_directory(given: Path | None, planned: str | Path, repo: Path | None = None) -> Path:
    """The terraform directory: ``--dir`` as given (relative to the working directory), else the plan's
    ``terraform.directory`` in the repository root (the checkout, never the installed package)."""
    if given is not None:
        candidate = Path(given)
        if not candidate.is_dir():
            raise ConfigurationError(f"--dir {given}: no such directory")
        return candidate.resolve()
    from promoter.adapters.git import find_repository

    root = repo or find_repository()
    candidate = root / planned
    if not candidate.is_dir():
        raise ConfigurationError(f"terraform directory {planned} not found in the repository {root}",
                                 hint="check the plan's terraform.directory, or pass --dir DIR")
    return candidate.resolve()


# -- plan ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlanOutcome:
    env: str
    workspace: str
    plan_file: Path
    sha256: str
    created: str
    terraform_version: str
    review: Review
    workspace_created: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "workspace": self.workspace,
            "workspace_created": self.workspace_created,
            "plan_file": str(self.plan_file),
            "sha256": self.sha256,
            "created": self.created,
            "terraform_version": self.terraform_version,
            "changes": self.review.has_changes,
            "review": self.review.to_dict(),
        }


def ensure_workspace(runner: TerraformRunner, workspace: str, *, create: bool) -> bool:
    """Select ``workspace``; create it only when ``create``. True when it was created."""
    _current, existing = runner.workspaces()
    if workspace in existing:
        runner.select_workspace(workspace)
        return False
    if not create:
        raise RefusedError(
            f"terraform workspace {workspace!r} does not exist; existing workspaces: {', '.join(existing) or 'none'}",
            hint="check the backend (env/<env>.backend.hcl) and account; to create it: --create-workspace",
        )
    runner.new_workspace(workspace)
    return True


def plan_infra(
    settings: InfraSettings,
    runner: TerraformRunner,
    ledger: Ledger,
    *,
    create_workspace: bool = False,
    now: Now = utc_now,
    progress: Callable[[str], None] = lambda _msg: None,
) -> PlanOutcome:
    version = runner.version()
    check_version(version, settings.min_version)
    with ledger.lock(settings.env, purpose="infra plan"):
        progress(f"terraform {version}: init for {settings.env}")
        runner.init(str(settings.backend_config) if settings.backend_config else None)
        created_ws = ensure_workspace(runner, settings.workspace, create=create_workspace)
        # an older plan file must not survive a failed plan and be mistaken for this one
        settings.plan_file.unlink(missing_ok=True)
        progress(f"planning in workspace {settings.workspace}")
        runner.plan(str(settings.plan_file), str(settings.var_file) if settings.var_file else None)
        review = settings.review(runner.show_json(str(settings.plan_file)))
        outcome = PlanOutcome(
            env=settings.env,
            workspace=settings.workspace,
            plan_file=settings.plan_file,
            sha256=sha256_file(settings.plan_file),
            created=_iso(now()),
            terraform_version=version,
            review=review,
            workspace_created=created_ws,
        )
        ledger.append(
            settings.env,
            "infra-plan",
            plan_file=str(settings.plan_file),
            sha256=outcome.sha256,
            workspace=settings.workspace,
            workspace_created=created_ws,
            created=outcome.created,
            terraform_version=version,
            directory=str(settings.directory),
            review=review.summary(),
        )
    return outcome


# -- verify, approve, apply ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SavedPlan:
    """A saved plan file that matches a recorded plan, fresh and in the selected workspace."""

    plan_file: Path
    sha256: str
    record: dict[str, Any]
    age_minutes: float
    workspace: str
    review: Review
    approval: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan_file": str(self.plan_file),
            "sha256": self.sha256,
            "workspace": self.workspace,
            "created": self.record.get("created"),
            "age_minutes": round(self.age_minutes, 2),
            "review": self.review.to_dict(),
            "approval": self.approval,
        }


def _latest(records: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    for record in reversed(records):
        if all(record.get(k) == v for k, v in match.items()):
            return record
    return None


def verify_saved_plan(
    settings: InfraSettings, runner: TerraformRunner, ledger: Ledger, *, now: Now = utc_now
) -> SavedPlan:
    """Refuse a plan file that is missing, unrecorded (tampered), stale, made for another workspace, or applied."""
    path = settings.plan_file
    if not path.is_file():
        raise RefusedError(
            f"no saved plan at {path}", hint=f"run `promoter infra plan --env {settings.env}` first"
        )
    digest = sha256_file(path)
    plans = ledger.records(settings.env, kind="infra-plan")
    record = _latest(plans, sha256=digest)
    if record is None:
        last = _latest(plans, plan_file=str(path)) or (plans[-1] if plans else None)
        known = f"; the last plan recorded for {settings.env} has sha256 {last['sha256']}" if last else ""
        raise RefusedError(
            f"plan file {path} (sha256 {digest}) is not a plan that `promoter infra plan` reviewed for "
            f"{settings.env}{known}: it was changed or made elsewhere",
            hint=f"make and review a new plan: promoter infra plan --env {settings.env}",
        )
    if _latest(ledger.records(settings.env, kind="infra-apply"), sha256=digest, outcome="applied"):
        raise RefusedError(
            f"plan {digest[:12]} was already applied to {settings.env}",
            hint=f"make a new plan: promoter infra plan --env {settings.env}",
        )
    created = _parse_time(record.get("created") or record["ts"])
    age = (now() - created).total_seconds() / 60
    if age > settings.max_plan_age_minutes:
        raise RefusedError(
            f"plan {digest[:12]} was made {age:.0f} minutes ago (at {record.get('created')}); the plan allows "
            f"at most {settings.max_plan_age_minutes} minutes between plan and apply",
            hint=f"make a fresh plan: promoter infra plan --env {settings.env}",
        )
    recorded_ws = record.get("workspace")
    if recorded_ws != settings.workspace:
        raise RefusedError(
            f"plan {digest[:12]} was made in workspace {recorded_ws!r}, but {settings.env} uses {settings.workspace!r}"
        )
    selected = runner.current_workspace()
    if selected != recorded_ws:
        raise RefusedError(
            f"plan {digest[:12]} was made in workspace {recorded_ws!r}, but terraform has {selected!r} selected "
            f"in {settings.directory}",
            hint=f"make the plan again in the right workspace: promoter infra plan --env {settings.env}",
        )
    review = settings.review(runner.show_json(str(path)))
    approval = _latest(ledger.records(settings.env, kind="approval"), gate=TERRAFORM_GATE, sha256=digest)
    return SavedPlan(path, digest, record, age, recorded_ws, review, approval)


def approve_plan(
    settings: InfraSettings,
    runner: TerraformRunner,
    ledger: Ledger,
    *,
    approver: str,
    allow_destroy: bool = False,
    ref: str | None = None,
    identity: str | None = None,
    now: Now = utc_now,
) -> dict[str, Any]:
    """Record approval of the saved plan (gate ``terraform-approval``) after verifying and reviewing it."""
    if not approver or not approver.strip():
        raise UsageError("an approval needs the approver's name: --approver NAME")
    saved = verify_saved_plan(settings, runner, ledger, now=now)
    if saved.review.blocked and not allow_destroy:
        raise _blocked(settings, saved.review)
    return ledger.append(
        settings.env,
        "approval",
        gate=TERRAFORM_GATE,
        approver=approver.strip(),
        ref=ref,
        sha256=saved.sha256,
        plan_file=str(saved.plan_file),
        workspace=saved.workspace,
        allow_destroy=allow_destroy,
        review=saved.review.summary(),
        **({"identity": identity} if identity else {}),
    )


def apply_plan(
    settings: InfraSettings, runner: TerraformRunner, ledger: Ledger, *, now: Now = utc_now
) -> dict[str, Any]:
    """Apply exactly the approved saved plan; refuses anything that is not it."""
    version = runner.version()
    check_version(version, settings.min_version)
    with ledger.lock(settings.env, purpose="infra apply"):
        saved = verify_saved_plan(settings, runner, ledger, now=now)
        approval = saved.approval
        if approval is None:
            raise RefusedError(
                f"plan {saved.sha256[:12]} for {settings.env} has no recorded approval",
                hint=f"approve it: promoter infra apply --env {settings.env} --approve --approver NAME",
            )
        if saved.review.blocked and not approval.get("allow_destroy"):
            raise _blocked(settings, saved.review)
        # apply a private copy whose hash is checked, so the file cannot change between check and apply
        with tempfile.TemporaryDirectory(prefix="promoter-apply-") as tmp:
            copy = Path(tmp) / saved.plan_file.name
            shutil.copyfile(saved.plan_file, copy)
            if sha256_file(copy) != saved.sha256:
                raise RefusedError(f"plan file {saved.plan_file} changed while it was being applied")
            ledger.append(
                settings.env, "infra-apply", sha256=saved.sha256, workspace=saved.workspace, outcome="started",
                approver=approval.get("approver"),
            )
            try:
                runner.apply(str(copy))
            except TerraformError as exc:
                ledger.append(
                    settings.env, "infra-apply", sha256=saved.sha256, workspace=saved.workspace, outcome="failed",
                    error=exc.message[-2000:],
                )
                raise
        return ledger.append(
            settings.env,
            "infra-apply",
            sha256=saved.sha256,
            workspace=saved.workspace,
            outcome="applied",
            approver=approval.get("approver"),
            counts=saved.review.counts,
            applied_at=_iso(now()),
        )


def _blocked(settings: InfraSettings, review: Review) -> RefusedError:
    lines = [f"{c.action} {c.address}" + (f" ({c.action_reason})" if c.action_reason else "") for c in review.blockers]
    return RefusedError(
        f"the plan for {settings.env} would destroy protected resources: " + "; ".join(lines),
        hint="change the configuration so they are kept, or, if the data loss is intended and agreed, approve "
        "with --allow-destroy",
    )


# -- other manual gates ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GateApproval:
    env: str
    gate: str
    title: str
    approver: str
    ref: str | None = None
    release: str | None = None
    record: dict[str, Any] = field(default_factory=dict)


def record_gate_approval(
    plan: Plan, ledger: Ledger, *, env: str, gate: str, approver: str, ref: str | None = None,
    release: str | None = None, artifact_sha256: str | None = None, identity: str | None = None,
) -> GateApproval:
    """Record a manual gate or check of the plan (``gates`` / ``manual_checks``) as passed for ``env``."""
    plan.environment(env)
    gates = {g.id: g for g in plan.gates}
    checks = {c.id: c for c in plan.manual_checks}
    if gate not in gates and gate not in checks:
        known = ", ".join([*gates, *checks])
        raise UsageError(f"unknown gate {gate!r}; the plan defines: {known}")
    if not approver or not approver.strip():
        raise UsageError("an approval needs the approver's name: --approver NAME")
    if gate in gates:
        spec = gates[gate]
        if spec.kind == "terraform":
            raise UsageError(
                f"gate {gate!r} approves a specific terraform plan file",
                hint=spec.record_with or "promoter infra apply --env ENV --approve --approver NAME",
            )
        if spec.before_env not in {"any", env}:
            raise UsageError(f"gate {gate!r} is recorded against {spec.before_env}, not {env}",
                             hint=spec.record_with or None)
        if spec.kind == "change-request" and not ref:
            raise UsageError(f"gate {gate!r} needs the change request number: --ref CR-NUMBER",
                             hint=spec.record_with or None)
        if spec.blocks_deploy and not release:
            raise UsageError(f"gate {gate!r} approves one release for {env}: --release TAG",
                             hint=spec.record_with or None)
        title = spec.title
    else:
        check = checks[gate]
        if env not in check.envs:
            raise UsageError(f"check {gate!r} applies to {', '.join(check.envs)}, not {env}",
                             hint=check.record_with or None)
        title = check.title
    if artifact_sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", artifact_sha256):
        raise UsageError(f"--sha256 {artifact_sha256!r}: expected the artifact's 64 hex digit sha256")
    binding = {k: v for k, v in (("artifact_sha256", artifact_sha256), ("identity", identity)) if v}
    record = ledger.append(env, "approval", gate=gate, title=title, approver=approver.strip(), ref=ref,
                           release=release, **binding)
    return GateApproval(env=env, gate=gate, title=title, approver=approver.strip(), ref=ref, release=release,
                        record=record)


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- validate: the configuration as it ships, checked before any account sees it --------------------------------
@dataclass(frozen=True)
class Diagnostic:
    """One terraform diagnostic, located in the shipped configuration (not in the scratch copy)."""

    severity: str
    summary: str
    detail: str = ""
    file: str | None = None
    line: int | None = None
    column: int | None = None
    address: str | None = None

    def location(self) -> str:
        return f"{self.file}:{self.line}" if self.file and self.line else (self.file or "-")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Finding:
    """A failed check of a misconfiguration scanner."""

    scanner: str
    check_id: str
    title: str
    resource: str
    file: str
    line: int
    severity: str
    target: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CheckStep:
    name: str
    ok: bool
    detail: str
    duration_s: float = 0.0
    diagnostics: list[Diagnostic] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)
    skipped: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "skipped": self.skipped, "detail": self.detail,
                "duration_s": round(self.duration_s, 2), "diagnostics": [d.to_dict() for d in self.diagnostics],
                "findings": [f.to_dict() for f in self.findings], "reports": list(self.reports)}


@dataclass(frozen=True)
class ValidationOutcome:
    env: str
    directory: Path
    offline: bool
    terraform_version: str
    evidence_dir: Path
    steps: tuple[CheckStep, ...]
    review: Review | None = None

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps)

    @property
    def failed(self) -> list[str]:
        return [s.name for s in self.steps if not s.ok]

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "env": self.env, "directory": str(self.directory), "offline": self.offline,
                "terraform_version": self.terraform_version, "evidence_dir": str(self.evidence_dir),
                "failed": self.failed, "steps": [s.to_dict() for s in self.steps],
                "plan_counts": dict(self.review.counts) if self.review else None}


class Scanner(Protocol):
    """A misconfiguration scanner (``promoter.adapters.scanners``): failed checks of a directory or plan JSON,
    its own report written to ``report``."""

    name: str

    def scan(self, target: Path, report: Path, *, plan: bool, source: Path | None = None) -> list[dict[str, Any]]:
        ...


class ValidationRunner(TerraformRunner, Protocol):
    def fmt_check(self) -> list[str]: ...

    def validate_json(self) -> dict[str, Any]: ...

    def test(self, *args: str) -> tuple[int, str]: ...


TEST_MIN_VERSION = "1.7.0"  # mock_provider in terraform test


def test_diagnostics(output: str, copy_dir: Path, source_dir: Path,
                     shown_as: Callable[[Path], str] = str) -> list[Diagnostic]:
    """The errors of ``terraform test`` output (failed assertions and others), located in the source."""
    out = []
    pattern = re.compile(r"^Error: (?P<summary>.+?)\n\n\s+on (?P<file>\S+) line (?P<line>\d+)[^\n]*\n"
                         r"(?P<rest>.*?)(?=^Error: |^tests/|^\s+run \"|^(?:Success|Failure)! |\Z)", re.M | re.S)
    for m in pattern.finditer(output):
        file = source_dir / m.group("file")
        # the source line and the value box are for a terminal; keep the diff's values and the message
        kept = [line.strip().lstrip("│").strip() for line in m.group("rest").splitlines()]
        kept = [line for line in kept if line and not re.match(r"\d+:|├|---|\+\+\+|Diff:", line)]
        out.append(Diagnostic("error", m.group("summary").strip(), " ".join(kept), file=shown_as(file),
                              line=int(m.group("line"))))
    return out


def diagnostics_from(validate_json: dict[str, Any], copy_dir: Path, source_dir: Path,
                     shown_as: Callable[[Path], str] = str) -> list[Diagnostic]:
    """``terraform validate -json`` diagnostics, with file names mapped from the scratch copy to the source."""
    out = []
    for diag in validate_json.get("diagnostics") or []:
        rng = diag.get("range") or {}
        file = rng.get("filename")
        if file:
            path = Path(file)
            path = path if path.is_absolute() else copy_dir / path
            try:
                path = source_dir / path.resolve().relative_to(copy_dir.resolve())
            except ValueError:
                pass
            file = shown_as(path)
        start = rng.get("start") or {}
        out.append(Diagnostic(severity=diag.get("severity", "error"), summary=diag.get("summary", ""),
                              detail=" ".join((diag.get("detail") or "").split()), file=file, line=start.get("line"),
                              column=start.get("column"), address=diag.get("address")))
    return out


def validate_infra(
    settings: InfraSettings,
    runner_for: Callable[[Path], ValidationRunner],
    scanners: list[Scanner] | None,
    *,
    work_dir: Path,
    evidence_dir: Path,
    offline: bool,
    plan: bool = True,
    shown_as: Callable[[Path], str] = str,
    progress: Callable[[str], None] = lambda _msg: None,
    clock: Callable[[], float] | None = None,
) -> ValidationOutcome:
    """fmt -check, init and validate on a local-backend copy, ``terraform test`` (``tests/common.tftest.hcl`` and
    ``tests/<env>.tftest.hcl`` with the environment's tfvars), plan for the environment (its JSON kept), and each
    scanner over the configuration and the plan JSON. Nothing stops at the first failure: every check that can
    run, runs, so one report says everything that is wrong. ``scanners=None`` skips scanning, and says so."""
    import time

    tick = clock or time.monotonic
    evidence_dir.mkdir(parents=True, exist_ok=True)
    steps: list[CheckStep] = []
    source = settings.directory

    def timed(name: str, fn: Callable[[], CheckStep]) -> CheckStep:
        progress(name)
        start = tick()
        try:
            step = fn()
        except (TerraformError, ConfigurationError) as exc:
            step = CheckStep(name, False, exc.message + (f" ({exc.hint})" if exc.hint else ""))
        step.duration_s = tick() - start
        steps.append(step)
        return step

    source_runner = runner_for(source)
    version = source_runner.version()

    def fmt() -> CheckStep:
        files = source_runner.fmt_check()
        diags = [Diagnostic("error", "Not in canonical format", "terraform fmt would rewrite it",
                            file=shown_as(source / f), line=None) for f in files]
        return CheckStep("fmt", not files, "canonical format" if not files else
                         f"{len(files)} file(s) not in canonical format (run terraform fmt -recursive)",
                         diagnostics=diags)

    timed("fmt", fmt)
    copy = settings.with_local_backend(work_dir)
    runner = runner_for(copy.directory)

    init = timed("init", lambda: (runner.init(None), CheckStep("init", True, "providers installed"))[1])

    def validate() -> CheckStep:
        result = runner.validate_json()
        diags = diagnostics_from(result, copy.directory, source, shown_as)
        errors = [d for d in diags if d.severity == "error"]
        ok = bool(result.get("valid")) and not errors
        return CheckStep("validate", ok, "the configuration is valid" if ok else f"{len(errors)} error(s)",
                         diagnostics=diags)

    valid = timed("validate", validate) if init.ok else _skipped(steps, "validate", "init failed")
    def tests() -> CheckStep:
        files = sorted(p.name for p in (copy.directory / "tests").glob("*.tftest.hcl"))
        wanted = [f for f in ("common.tftest.hcl", f"{settings.env}.tftest.hcl") if f in files]
        if not wanted:
            return CheckStep("test", True, "no tests/common.tftest.hcl or tests/ENV.tftest.hcl", skipped=True)
        if _version_tuple(version) < _version_tuple(TEST_MIN_VERSION):
            return CheckStep("test", False, f"terraform test with mock providers needs terraform >= "
                             f"{TEST_MIN_VERSION}; this is {version} (--offline brings 1.15)")
        args = [f"-filter=tests/{f}" for f in wanted]
        if copy.var_file:
            args.insert(0, f"-var-file={copy.var_file.relative_to(copy.directory)}")
        code, output = runner.test(*args)
        summary = re.findall(r"(?:Success|Failure)! (\d+ passed, \d+ failed)", output)
        detail = f"{', '.join(wanted)}: {summary[-1] if summary else 'no summary'}"
        return CheckStep("test", code == 0, detail,
                         diagnostics=test_diagnostics(output, copy.directory, source, shown_as))

    if valid.ok:
        timed("test", tests)
    else:
        _skipped(steps, "test", "validate failed")
    review: Review | None = None
    plan_json_path = evidence_dir / f"plan-{settings.env}.json"
    plan_json_path.unlink(missing_ok=True)

    def do_plan() -> CheckStep:
        nonlocal review
        ensure_workspace(runner, copy.workspace, create=True)
        runner.plan(str(copy.plan_file), str(copy.var_file) if copy.var_file else None)
        document = runner.show_json(str(copy.plan_file))
        plan_json_path.write_text(json.dumps(document, indent=2, sort_keys=True), encoding="utf-8")
        review = copy.review(document)
        counts = ", ".join(f"{n} to {a}" for a, n in review.counts.items() if n)
        blocked = f"; BLOCKED: {', '.join(c.address for c in review.blockers)}" if review.blocked else ""
        return CheckStep("plan", not review.blocked, f"{counts or 'no changes'}{blocked}",
                         reports=[str(plan_json_path)])

    if plan:
        planned = timed("plan", do_plan) if valid.ok else _skipped(steps, "plan", "validate failed")
    else:
        planned = _skipped(steps, "plan", "not asked (--no-plan)", ok=True)

    if scanners is None:
        _skipped(steps, "scan", "--no-scan", ok=True)
    else:
        for scanner in scanners:
            def scan(scanner: Scanner = scanner) -> CheckStep:
                findings: list[Finding] = []
                reports = []
                targets = [(source, False, evidence_dir / f"{scanner.name}-configuration.json")]
                if planned.ok and plan_json_path.exists():
                    targets.append((plan_json_path, True, evidence_dir / f"{scanner.name}-plan-{settings.env}.json"))
                for target, is_plan, report in targets:
                    for raw in scanner.scan(target, report, plan=is_plan, source=source):
                        finding = Finding(**raw)
                        if not is_plan:
                            finding = replace(finding, file=shown_as(source / finding.file.lstrip("/")))
                        findings.append(finding)
                    reports.append(str(report))
                scanned = "configuration and plan" if len(targets) == 2 else "configuration (no plan to scan)"
                ok = not findings and len(targets) == (2 if plan else 1)
                return CheckStep(scanner.name, ok, f"{scanned}: {len(findings)} finding(s)", findings=findings,
                                 reports=reports)

            timed(scanner.name, scan)
    return ValidationOutcome(env=settings.env, directory=source, offline=offline, terraform_version=version,
                             evidence_dir=evidence_dir, steps=tuple(steps), review=review)


def _skipped(steps: list[CheckStep], name: str, why: str, *, ok: bool = False) -> CheckStep:
    step = CheckStep(name, ok, f"not run: {why}", skipped=True)
    steps.append(step)
    return step
