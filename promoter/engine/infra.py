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

:func:`review_plan` is the pure decision on Terraform's plan JSON (``terraform show -json``): counts by action,
every delete, replace and forget with its reason, and blockers for deletes and replaces of protected
(stateful) resources. Everything else here gathers facts through the :class:`TerraformRunner` port and the
ledger. :func:`record_gate_approval` records the plan's other manual gates (``promoter approve``).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from promoter.errors import ConfigurationError, RefusedError, TerraformError, UsageError

if TYPE_CHECKING:
    from promoter.engine.ledger import Ledger
    from promoter.plan.models import Plan

TERRAFORM_GATE = "terraform-approval"
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
