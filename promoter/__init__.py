"""promoter: the campaigns API's promotion runbook as executable, recorded, reversible steps."""

__version__ = "0.1.0"
