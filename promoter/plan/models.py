"""Pydantic models of a promotion plan (``plans/*.yaml``).

Every model forbids unknown keys, so a typo in the plan is an error instead of a silently ignored setting.
Names in ``resources`` and ``alarms`` are templates with ``{env}``; :meth:`Plan.names` resolves them for one
environment.
"""

from __future__ import annotations

import itertools
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

AWS_REGION = r"^[a-z]{2}(-gov)?-[a-z]+-\d$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Service(_Strict):
    name: str
    package: str
    handler: str
    runtime: str = "python3.12"
    architecture: Literal["x86_64", "arm64"] = "x86_64"
    memory_mb: int = Field(256, ge=128, le=10240)
    timeout_seconds: int = Field(10, ge=1, le=900)
    base_path: str
    health_path: str

    @property
    def python_version(self) -> str:
        """``python3.12`` -> ``3.12``."""
        return self.runtime.removeprefix("python")

    @property
    def wheel_platform(self) -> str:
        """The manylinux platform of the runtime's wheels: ``manylinux2014_x86_64`` or ``_aarch64``."""
        return f"manylinux2014_{'x86_64' if self.architecture == 'x86_64' else 'aarch64'}"


class CodePolicy(_Strict):
    branch: str = "main"
    require_clean_tree: bool = True
    require_release_tag: bool = True
    tag_pattern: str = r"^v\d+\.\d+\.\d+$"

    @field_validator("tag_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value


class DisasterRecovery(_Strict):
    primary_region: str = Field(pattern=AWS_REGION)
    failover_region: str = Field(pattern=AWS_REGION)

    @model_validator(mode="after")
    def _distinct(self) -> DisasterRecovery:
        if self.primary_region == self.failover_region:
            raise ValueError("failover_region must differ from primary_region")
        return self


class Strategy(_Strict):
    mode: Literal["canary", "all-at-once"] = "all-at-once"
    canary_required: bool = False

    @model_validator(mode="after")
    def _required_means_canary(self) -> Strategy:
        if self.canary_required and self.mode != "canary":
            raise ValueError("canary_required is true but mode is not 'canary'")
        return self


class Passport(_Strict):
    """What an environment accepts: only an artifact (by sha256) that an earlier environment's records prove."""

    proven_in: str  # the environment whose ledger must prove the artifact (sit for prod)
    validation_phase: str | None = None  # every step of this phase must have passed there for the artifact
    min_soak_minutes: float = Field(60, ge=0)  # served 100 % there this long, with no rollback meanwhile
    allow_unproven: bool = False  # whether --allow-unproven may override a missing proof at all


class DataSafety(_Strict):
    """What must be on record before traffic shifts: a table backup, PITR, the function's configuration."""

    require_backup: bool = False
    max_backup_age_minutes: int = Field(240, ge=1)
    max_pitr_lag_minutes: int = Field(15, ge=1)  # the latest restorable time must be at most this old


class Environment(_Strict):
    account_id: str = Field(pattern=r"^\d{12}$")
    region: str = Field(pattern=AWS_REGION)
    domain: str = Field(pattern=r"^[a-z0-9.-]+\.[a-z]{2,}$")
    profile: str
    terraform_workspace: str
    build_target: Literal["lambda", "local"] = "lambda"
    log_retention_days: int = Field(30, ge=1)
    require_pitr: bool = False
    allow_chaos: bool = False
    confirm: bool = False  # acting commands ask before changing anything (or need --yes)
    dr: DisasterRecovery | None = None
    strategy: Strategy = Strategy()
    passport: Passport | None = None
    data_safety: DataSafety = DataSafety()

    @model_validator(mode="after")
    def _dr_primary_is_region(self) -> Environment:
        if self.dr and self.dr.primary_region != self.region:
            raise ValueError(f"dr.primary_region {self.dr.primary_region} differs from region {self.region}")
        return self


class Resources(_Strict):
    function: str
    alias: str = "live"
    table: str
    table_partition_key: str = "id"
    templates_bucket: str
    log_group: str
    execution_role: str
    dlq: str
    sns_topic: str
    dashboard: str
    user_pool: str
    user_pool_client: str
    rest_api: str
    base_path_mapping: str


class Dependency(_Strict):
    resource: Literal["table", "templates_bucket", "user_pool"]
    owner: str
    note: str = ""


class CanaryStep(_Strict):
    weight: int = Field(ge=1, le=100)
    bake_seconds: int = Field(ge=0, le=86_400)


class Canary(_Strict):
    steps: list[CanaryStep] = Field(min_length=1)
    analysis_interval_seconds: int = Field(60, ge=1, le=3600)
    min_invocations: int = Field(50, ge=1, le=100_000)
    max_extension_seconds: int = Field(900, ge=0, le=3600)
    on_inconclusive: Literal["fail", "pass"] = "fail"
    compare_to_stable: bool = True
    relative_tolerance_pct: float = Field(1.0, ge=0, le=10)
    # the chance that a good release is failed by the error-rate test, over all the steps of one release
    false_alarm_rate: float = Field(0.01, gt=0, le=0.1)
    # confidence of the upper bound on the canary's error rate that must be under the threshold to pass
    pass_confidence: float = Field(0.95, ge=0.8, lt=1)
    # alarms already in ALARM before the deploy are reported and do not block it (a fix forward); false: refuse
    fix_forward_alarms: bool = True

    @model_validator(mode="after")
    def _ascending_to_100(self) -> Canary:
        weights = [s.weight for s in self.steps]
        if any(b <= a for a, b in itertools.pairwise(weights)):
            raise ValueError(f"canary weights must strictly increase, got {weights}")
        if weights[-1] != 100:
            raise ValueError(f"the last canary step must be 100, got {weights[-1]}")
        return self


class Metrics(_Strict):
    lambda_namespace: str = "AWS/Lambda"
    service_namespace: str
    service_dimension: str = "service"
    service_name: str
    version_dimension: str = "function_version"
    server_error_metric: str = "ServerErrors"


class RollbackThresholds(_Strict):
    error_rate_pct: float = Field(gt=0, le=50)
    p95_duration_ms: float = Field(gt=0, le=900_000)
    throttles_per_minute: float = Field(ge=0, le=600)
    dlq_messages: int = Field(ge=0, le=1000)


class Sla(_Strict):
    p95_ms: float = Field(gt=0)
    error_rate_pct: float = Field(ge=0, le=100)


class Alarm(_Strict):
    id: str
    name: str
    description: str = ""
    metric: str
    statistic: str
    threshold: float
    comparison: Literal[
        "GreaterThanThreshold", "GreaterThanOrEqualToThreshold", "LessThanThreshold", "LessThanOrEqualToThreshold"
    ]
    period_seconds: int = Field(60, ge=10)
    evaluation_periods: int = Field(1, ge=1)
    actions: list[Literal["sns", "autoscale"]] = ["sns"]


def _alarm_cannot_fire(alarm: Alarm, timeout_ms: int) -> str | None:
    """Why ``alarm`` can never reach ALARM (a percentage over 100, a duration past the timeout, a count below 0)."""
    above = alarm.comparison.startswith("GreaterThan")
    strict = not alarm.comparison.endswith("OrEqualToThreshold")
    t = alarm.threshold
    if above and alarm.metric.endswith("_pct") and (t >= 100 if strict else t > 100):
        return f"{alarm.metric} is a percentage and never exceeds 100"
    if above and alarm.metric == "Duration" and (t >= timeout_ms if strict else t > timeout_ms):
        return f"Duration never exceeds the function timeout, {timeout_ms} ms"
    if not above and (t <= 0 if strict else t < 0):
        return f"{alarm.metric} is never below 0"
    return None


class Terraform(_Strict):
    directory: str
    min_version: str = Field("1.0.0", pattern=r"^\d+\.\d+\.\d+$")
    max_plan_age_minutes: int = Field(60, ge=1)
    protected_resource_types: list[str] = []
    protected_addresses: list[str] = []


class StateBackend(_Strict):
    """Where the ledger, the lock and the approvals are kept: ``local`` (a directory) or ``s3`` (a bucket shared
    by the team and CI, with conditional writes, as Terraform's S3 backend locks since 1.10)."""

    backend: Literal["local", "s3"] = "local"
    path: str | None = None  # local: the directory (default: .promoter/, or PROMOTER_HOME)
    bucket: str | None = None
    prefix: str = "promoter"
    region: str | None = None
    profile: str | None = None
    role_arn: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> StateBackend:
        if self.backend == "s3" and not self.bucket:
            raise ValueError("bucket: an s3 state backend needs a bucket")
        if self.backend == "local" and (self.bucket or self.role_arn):
            raise ValueError("backend: bucket and role_arn apply to the s3 backend only")
        return self


class State(StateBackend):
    """The state backend for every environment, and optionally one per environment (``environments``)."""

    environments: dict[str, StateBackend] = {}

    @property
    def default(self) -> StateBackend:
        return StateBackend(**self.model_dump(exclude={"environments"}))


class Gate(_Strict):
    id: str
    title: str
    before_env: str
    kind: Literal["signoff", "change-request", "terraform", "other"] = "other"
    approvers: list[str] = []
    record_with: str = ""
    blocks_deploy: bool = False  # deploy to before_env refuses a release without this approval recorded for it
    four_eyes: bool = False  # the approver's identity must differ from the identity that started the promotion


class ManualCheck(_Strict):
    id: str
    title: str
    envs: list[str]
    record_with: str = ""
    four_eyes: bool = False


# The operations a phase step may name. A step is data, never a shell string: the pipeline maps each action to
# the engine operation of the same name.
StepAction = Literal["preflight", "infra-plan", "infra-apply", "deploy", "smoke", "backup", "approval", "status",
                     "integration", "security", "load"]
MANUAL_ACTIONS = frozenset({"approval", "infra-apply"})  # steps that wait for a person's recorded approval
_STEP_ENV_ACTIONS = frozenset({"preflight", "smoke", "status"})  # read-only steps that may look at another env


class PhaseStep(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str
    action: StepAction
    gate: str | None = None  # approval: the plan gate or manual check it waits for
    env: str | None = None  # preflight, smoke, status: run against this environment instead of the phase's
    canary: bool = False  # deploy: shift by the plan's canary steps

    @property
    def manual(self) -> bool:
        return self.action in MANUAL_ACTIONS

    @model_validator(mode="after")
    def _parameters(self) -> PhaseStep:
        if self.action == "approval" and not self.gate:
            raise ValueError(f"step {self.id!r}: action approval needs gate: <a gate or manual check id>")
        if self.gate and self.action != "approval":
            raise ValueError(f"step {self.id!r}: gate is a parameter of action approval, not {self.action}")
        if self.env and self.action not in _STEP_ENV_ACTIONS:
            raise ValueError(f"step {self.id!r}: env is a parameter of {', '.join(sorted(_STEP_ENV_ACTIONS))} "
                             f"steps, not {self.action}")
        if self.canary and self.action != "deploy":
            raise ValueError(f"step {self.id!r}: canary is a parameter of action deploy, not {self.action}")
        return self


class Phase(_Strict):
    id: str
    title: str
    env: str
    steps: list[PhaseStep] = Field(min_length=1)


class SmokeCampaign(_Strict):
    name: str
    status: str = "draft"
    start_date: str


class Smoke(_Strict):
    latency_budget_ms: float = Field(500, gt=0)
    test_campaign: SmokeCampaign


class LoadMix(_Strict):
    """Relative weights of the request kinds a load run sends (0 leaves a kind out)."""

    health: float = Field(1, ge=0)
    list: float = Field(2, ge=0)
    get: float = Field(4, ge=0)
    create: float = Field(1, ge=0)
    update: float = Field(1, ge=0)
    delete: float = Field(1, ge=0)

    @model_validator(mode="after")
    def _some_weight(self) -> LoadMix:
        if not any(self.model_dump().values()):
            raise ValueError("load.mix: at least one request kind needs a weight above 0")
        return self


class LoadStress(_Strict):
    """``promoter load --stress``: the rate rises from ``start_rps`` by ``step_rps`` every ``step_seconds`` until
    the SLA breaks or errors appear, never above ``ceiling_rps`` nor longer than ``time_limit_seconds``."""

    start_rps: float = Field(25, gt=0)
    step_rps: float = Field(25, gt=0)
    step_seconds: int = Field(60, gt=0)
    ceiling_rps: float = Field(400, gt=0)
    time_limit_seconds: int = Field(1800, gt=0)

    @model_validator(mode="after")
    def _ceiling(self) -> LoadStress:
        if self.ceiling_rps < self.start_rps:
            raise ValueError("load.stress.ceiling_rps must not be below start_rps")
        return self


class Load(_Strict):
    requests_per_second: float = Field(gt=0)
    duration_seconds: int = Field(gt=0)
    mix: LoadMix = LoadMix()
    per_user_rps: float = Field(1.0, gt=0)  # each simulated user's pace: users = rate / per_user_rps
    spawn_seconds: float = Field(10, ge=0)  # users start over this long, so environments warm up in turn
    data_prefix: str = Field("promoter-load-", min_length=3)  # the names of the campaigns a run creates
    request_timeout_seconds: float = Field(10, gt=0)
    min_achieved_pct: float = Field(95, gt=0, le=100)  # of the target rate, or the rate was not held
    max_lambda_throttles: int = Field(0, ge=0)
    max_dynamodb_throttles: int = Field(0, ge=0)
    metrics_wait_seconds: float = Field(300, ge=0)  # how long to wait for the window's CloudWatch data
    stress: LoadStress = LoadStress()


class Security(_Strict):
    """``promoter security``: the service's OpenAPI document, the test users of the authorization matrix, the
    fuzzing and log-sampling bounds, the ZAP image."""

    openapi: str = "campaigns_lambda/openapi.yaml"  # relative to the checkout
    test_users: dict[str, str] = {}  # principal (a group, or `none`) -> Cognito username, for real accounts
    fuzz_max_examples: int = Field(25, ge=1)
    fuzz_max_seconds: float = Field(90, gt=0)
    log_sample_minutes: float = Field(60, gt=0)
    log_sample_events: int = Field(2000, ge=1)
    zap_image: str = "ghcr.io/zaproxy/zaproxy:stable"


class Ci(_Strict):
    """How CI (GitHub Actions) runs promoter: the IAM roles it assumes by OIDC in each environment's account, the
    GitHub environment of each job, and the gates a GitHub environment's required reviewers approve. The workflows
    read all of it through ``promoter ci outputs``, so they hold no account id of their own."""

    provider: Literal["github"] = "github"
    deploy_role: str = "promoter-deploy-{env}"  # role name in the env's account: deploy, apply, rollback
    plan_role: str = "promoter-plan-{env}"  # read-only role for preflight and terraform plan (no approval needed)
    github_environment: str = "{env}"  # the GitHub environment of the jobs that may change the env
    session_name: str = "promoter-{env}"
    reviewer_gates: dict[str, list[str]] = {}  # env -> gates the env's GitHub reviewers approve (+ terraform plan)

    def role_arn(self, account_id: str, env: str, purpose: Literal["deploy", "plan"] = "deploy") -> str:
        name = (self.deploy_role if purpose == "deploy" else self.plan_role).format(env=env)
        return f"arn:aws:iam::{account_id}:role/{name}"


class Contact(_Strict):
    role: str
    contact: str
    availability: str = ""


# -- after 100 %: the watch and its notifications -------------------------------------------------------------
class WatchPeriod(_Strict):
    """Checks every ``every_minutes`` from the end of the period before until ``until_minutes`` after 100 %."""

    until_minutes: float = Field(gt=0)
    every_minutes: float = Field(gt=0)


class Watch(_Strict):
    """What follows a release at 100 %: checks on the runbook's cadence, the rollback window, the soak."""

    periods: list[WatchPeriod] = [WatchPeriod(until_minutes=360, every_minutes=30),
                                  WatchPeriod(until_minutes=1440, every_minutes=60),
                                  WatchPeriod(until_minutes=10080, every_minutes=1440)]
    # a breach of the rollback thresholds inside this window rolls back automatically; after it, it pages
    rollback_window_minutes: float = Field(360, ge=0)
    # the soak passes when this long has passed at 100 % with every check green (SLA and rollback thresholds)
    soak_minutes: float = Field(4320, ge=0)
    # DynamoDB throttled requests on the table in one check's window above this are an SLA breach
    dynamodb_throttles: int = Field(0, ge=0)
    # how late metrics arrive (Lambda's on CloudWatch: a few minutes): each check reads the schedule's window
    # ending this long before it is due, so no datapoint falls between two checks
    data_lag_seconds: float = Field(180, ge=0, le=3600)

    @model_validator(mode="after")
    def _ascending(self) -> Watch:
        ends = [p.until_minutes for p in self.periods]
        if any(b <= a for a, b in itertools.pairwise(ends)):
            raise ValueError(f"watch.periods: until_minutes must strictly increase, got {ends}")
        if self.periods and self.soak_minutes > ends[-1]:
            raise ValueError(f"watch.soak_minutes {self.soak_minutes:g} is past the last check at {ends[-1]:g}")
        shortest = min((p.every_minutes for p in self.periods), default=0) * 60
        if self.periods and self.data_lag_seconds >= shortest:
            raise ValueError(f"watch.data_lag_seconds {self.data_lag_seconds:g} must be shorter than the shortest "
                             f"interval between checks, {shortest:g} s")
        return self


class Webhook(_Strict):
    """A Slack-compatible incoming webhook; the plan names where its URL is kept, never the URL."""

    url_env: str | None = "PROMOTER_WEBHOOK_URL"  # an environment variable holding the URL
    secret_id: str | None = None  # else an AWS Secrets Manager secret (the URL, or JSON with a "url" key)


class Notifications(_Strict):
    """Who hears about a promotion: the environment's SNS topic (resources.sns_topic) and a webhook."""

    sns: bool = True
    webhook: Webhook | None = Webhook()
    timeout_seconds: float = Field(5, gt=0, le=60)  # one attempt
    attempts: int = Field(3, ge=1, le=10)
    events: list[Literal["promotion-started", "step-passed", "waiting-approval", "rolled-back", "rollback-failed",
                         "watch-breach", "soak-passed"]] = [
        "promotion-started", "step-passed", "waiting-approval", "rolled-back", "rollback-failed", "watch-breach",
        "soak-passed"]


class ResolvedNames(Resources):
    """Every resource name of one environment, with ``{env}`` substituted."""

    env: str
    alarms: dict[str, str]


class Plan(_Strict):
    plan_version: Literal[1]
    id: str
    title: str
    project: str
    owner: str
    service: Service
    code: CodePolicy = CodePolicy()
    environments: dict[str, Environment] = Field(min_length=1)
    resources: Resources
    dependencies: list[Dependency] = []
    canary: Canary
    metrics: Metrics
    rollback_thresholds: RollbackThresholds
    sla: Sla
    alarms: list[Alarm] = []
    dashboard_widgets: list[str] = []
    terraform: Terraform
    gates: list[Gate] = []
    manual_checks: list[ManualCheck] = []
    phases: list[Phase] = []
    smoke: Smoke
    load: Load
    security: Security = Security()
    contacts: list[Contact] = []
    state: State = State()
    ci: Ci = Ci()
    watch: Watch = Watch()
    notifications: Notifications = Notifications()

    @model_validator(mode="after")
    def _references(self) -> Plan:
        envs = set(self.environments)
        problems = []
        approvable = {g.id: g for g in self.gates} | {c.id: c for c in self.manual_checks}
        phase_ids = [p.id for p in self.phases]
        if len(phase_ids) != len(set(phase_ids)):
            problems.append("phases: phase ids must be unique")
        for i, phase in enumerate(self.phases):
            if phase.env not in envs:
                problems.append(f"phases.{i}.env: unknown environment {phase.env!r}")
            step_ids = [s.id for s in phase.steps]
            if len(step_ids) != len(set(step_ids)):
                problems.append(f"phases.{i}.steps: step ids must be unique within a phase")
            for j, step in enumerate(phase.steps):
                where = f"phases.{i}.steps.{j}"
                if step.env and step.env not in envs:
                    problems.append(f"{where}.env: unknown environment {step.env!r}")
                if step.gate:
                    gate = approvable.get(step.gate)
                    if gate is None:
                        problems.append(f"{where}.gate: {step.gate!r} is neither a gate nor a manual check of the "
                                        f"plan (known: {', '.join(approvable)})")
                    elif isinstance(gate, Gate) and gate.kind == "terraform":
                        problems.append(f"{where}.gate: {step.gate!r} approves a terraform plan file; use action "
                                        "infra-apply")
        for name, spec in self.environments.items():
            passport = spec.passport
            if passport is None:
                continue
            if passport.proven_in not in envs or passport.proven_in == name:
                problems.append(f"environments.{name}.passport.proven_in: {passport.proven_in!r} must be another "
                                "environment of the plan")
            if passport.validation_phase and passport.validation_phase not in phase_ids:
                problems.append(f"environments.{name}.passport.validation_phase: unknown phase "
                                f"{passport.validation_phase!r}")
        for i, gate in enumerate(self.gates):
            if gate.before_env != "any" and gate.before_env not in envs:
                problems.append(f"gates.{i}.before_env: unknown environment {gate.before_env!r}")
        for i, check in enumerate(self.manual_checks):
            for env in check.envs:
                if env not in envs:
                    problems.append(f"manual_checks.{i}.envs: unknown environment {env!r}")
        for env, gates in self.ci.reviewer_gates.items():
            if env not in envs:
                problems.append(f"ci.reviewer_gates: unknown environment {env!r}")
            for gate in gates:
                if gate not in approvable:
                    problems.append(f"ci.reviewer_gates.{env}: {gate!r} is neither a gate nor a manual check of the "
                                    f"plan (known: {', '.join(approvable)})")
        for env in self.state.environments:
            if env not in envs:
                problems.append(f"state.environments: unknown environment {env!r}")
        ids = [a.id for a in self.alarms]
        if len(ids) != len(set(ids)):
            problems.append("alarms: alarm ids must be unique")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _thresholds_can_fail(self) -> Plan:
        """A rollback trigger the service can never reach is a check switched off: refuse it."""
        timeout_ms = self.service.timeout_seconds * 1000
        problems = []
        if self.rollback_thresholds.p95_duration_ms >= timeout_ms:
            problems.append(
                f"rollback_thresholds.p95_duration_ms: {self.rollback_thresholds.p95_duration_ms:g} ms can never be "
                f"exceeded: service.timeout_seconds stops every invocation at {timeout_ms} ms, set it below the timeout"
            )
        for i, alarm in enumerate(self.alarms):
            why = _alarm_cannot_fire(alarm, timeout_ms)
            if why:
                problems.append(f"alarms.{i}.threshold: alarm {alarm.id} can never fire: {why}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def environment(self, env: str) -> Environment:
        try:
            return self.environments[env]
        except KeyError:
            from promoter.errors import UnknownEnvironment

            raise UnknownEnvironment(env, sorted(self.environments)) from None

    def phase(self, phase_id: str) -> Phase:
        for phase in self.phases:
            if phase.id == phase_id:
                return phase
        from promoter.errors import UsageError

        raise UsageError(f"unknown phase {phase_id!r}; the plan defines: {', '.join(p.id for p in self.phases)}")

    def phases_of(self, env: str) -> list[Phase]:
        """The phases that run in ``env``, in the plan's order."""
        self.environment(env)
        return [p for p in self.phases if p.env == env]

    def names(self, env: str) -> ResolvedNames:
        """Resource names for ``env``, with every ``{env}`` placeholder filled in."""
        self.environment(env)
        fields = {k: v.replace("{env}", env) if isinstance(v, str) else v for k, v in self.resources}
        alarms = {a.id: a.name.replace("{env}", env) for a in self.alarms}
        return ResolvedNames(env=env, alarms=alarms, **fields)

    def uses_canary(self, env: str, requested: bool = False, *, all_at_once: bool = False) -> bool:
        """The environment's strategy is the default; ``requested`` (``--canary``) can only make it stricter, and
        ``all_at_once`` (a recorded override) relaxes it, except where the canary is required."""
        strategy = self.environment(env).strategy
        if requested or strategy.canary_required:
            return True
        return strategy.mode == "canary" and not all_at_once
