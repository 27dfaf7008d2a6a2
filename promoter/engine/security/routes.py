"""The service's route table and declared permissions, read from the service itself, and what the authorization
matrix expects of each cell.

The table comes from the resolver the plan's ``service.handler`` module builds (each route's method, path and the
permission its ``require(...)`` middleware carries) and the group -> permissions map of the module that defines
that middleware. It is read in a child interpreter from the checkout, so the tool never imports the service into
its own process and always reads the checkout it stands in.

Expectations, per route, principal (a group, or ``none``: a user in no group) and token variant:

- a public route (no permission): served, whatever the token (any status but 401 and 403);
- a valid token whose groups grant the permission: served; one that does not (the user in no group included): 403;
- no token, a token signed by another key, an expired token, ``alg: none``, a token for another audience: 401.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from promoter.errors import ConfigurationError

NO_GROUP = "none"
ANONYMOUS = "anonymous"
VARIANTS: tuple[str, ...] = ("valid", "other-key", "expired", "alg-none", "other-audience")
NO_TOKEN = "no-token"
Expectation = Literal["served", 401, 403]

_INTROSPECT = r"""
import importlib, json, sys
from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver
module = importlib.import_module(sys.argv[1])
apps = [v for v in vars(module).values() if isinstance(v, ApiGatewayResolver)]
if not apps:
    sys.exit("no API Gateway resolver in " + sys.argv[1])
routes, groups = [], {}
for route in apps[0]._static_routes + apps[0]._dynamic_routes:
    declared = [m for m in route.middlewares if getattr(m, "permission", None) is not None]
    for m in declared:
        table = getattr(sys.modules[m.__module__], "GROUP_PERMISSIONS", {})
        groups = {g: sorted(str(getattr(p, "value", p)) for p in ps) for g, ps in table.items()}
    routes.append({"method": route.method, "path": route.path, "handler": route.func.__name__,
                   "permission": str(getattr(declared[0].permission, "value", declared[0].permission))
                   if declared else None})
print(json.dumps({"routes": routes, "groups": groups}))
"""


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # OpenAPI style: /v1.0/campaigns/{campaign_id}
    permission: str | None  # None: public
    handler: str = ""

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def parameters(self) -> list[str]:
        return re.findall(r"\{([^}]+)\}", self.path)


@dataclass(frozen=True)
class RouteTable:
    routes: tuple[Route, ...]
    groups: dict[str, frozenset[str]] = field(default_factory=dict)  # group -> permissions

    def principals(self) -> list[str]:
        return [*sorted(self.groups), NO_GROUP]

    def grants(self, principal: str, permission: str) -> bool:
        return permission in self.groups.get(principal, frozenset())


def table_from_dict(data: dict[str, Any]) -> RouteTable:
    routes = tuple(Route(method=r["method"].upper(), path=re.sub(r"<([^>]+)>", r"{\1}", r["path"]),
                         permission=r.get("permission"), handler=r.get("handler", ""))
                   for r in data.get("routes", []))
    groups = {g: frozenset(p) for g, p in (data.get("groups") or {}).items()}
    return RouteTable(routes=routes, groups=groups)


def load_route_table(repo: Path, handler: str) -> RouteTable:
    """The route table of the service in ``repo`` whose entry point is ``handler`` (``pkg.module.function``)."""
    module = handler.rsplit(".", 1)[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env.update(PYTHONPATH=str(repo), POWERTOOLS_METRICS_DISABLED="true", AWS_DEFAULT_REGION="us-east-1")
    try:
        proc = subprocess.run([sys.executable, "-c", _INTROSPECT, module], cwd=repo, env=env, capture_output=True,
                              text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigurationError(f"cannot read the route table of {module}: {exc}") from None
    if proc.returncode != 0:
        raise ConfigurationError(f"cannot read the route table of {module} in {repo}: "
                                 f"{(proc.stderr or proc.stdout).strip()[-600:]}",
                                 hint="run from the service's checkout (or --repo DIR) with its dependencies "
                                 "installed")
    table = table_from_dict(json.loads(proc.stdout))
    if not table.routes:
        raise ConfigurationError(f"{module} registers no routes")
    return table


def expected(route: Route, table: RouteTable, principal: str, variant: str) -> Expectation:
    """What the cell must answer, from the route's declared permission (never from observing the service)."""
    if route.permission is None:
        return "served"
    if variant != "valid":
        return 401
    return "served" if table.grants(principal, route.permission) else 403


def judge(expectation: Expectation, status: int | None) -> bool:
    if status is None:
        return False
    if expectation == "served":
        return status not in (401, 403) and status < 500
    return status == expectation


@dataclass(frozen=True)
class Cell:
    route: Route
    principal: str  # a group, NO_GROUP, or ANONYMOUS for the request without a token
    variant: str
    expectation: Expectation

    @property
    def name(self) -> str:
        return f"{self.route.key} [{self.principal}, {self.variant}]"


def matrix_cells(table: RouteTable) -> list[Cell]:
    """Every route x every principal x every token variant, plus each route without a token."""
    cells = []
    for route in table.routes:
        cells.append(Cell(route, ANONYMOUS, NO_TOKEN, expected(route, table, ANONYMOUS, NO_TOKEN)))
        for principal in table.principals():
            for variant in VARIANTS:
                cells.append(Cell(route, principal, variant, expected(route, table, principal, variant)))
    return cells
