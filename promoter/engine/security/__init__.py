"""The security checks of an environment's API and storage (``promoter security``) and its pipeline step.

Modules: :mod:`.routes` (the route table and the matrix's expectations, pure), :mod:`.tokens` (the token port and
the forgeries), :mod:`.matrix`, :mod:`.injection`, :mod:`.fuzz` (schemathesis, ZAP), :mod:`.storage`,
:mod:`.openapi`, :mod:`.report` (results, JUnit, SARIF), :mod:`.core` (the run, in stages) and :mod:`.step`.
"""

from promoter.engine.security.core import SecuritySettings, run_security, write_reports
from promoter.engine.security.report import SecurityReport, TestResult
from promoter.engine.security.step import SecurityStep

__all__ = ["SecurityReport", "SecuritySettings", "SecurityStep", "TestResult", "run_security", "write_reports"]
