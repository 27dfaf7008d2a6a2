"""The promotion plan: pydantic models and the loader. The single source of truth the engine executes."""

from promoter.plan.loader import DEFAULT_PLAN, default_plan_path, load_plan, parse_plan
from promoter.plan.models import Plan, ResolvedNames

__all__ = ["DEFAULT_PLAN", "Plan", "ResolvedNames", "default_plan_path", "load_plan", "parse_plan"]
