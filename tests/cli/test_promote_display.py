"""The promotion's progress on a terminal: each step announced, a spinner while it runs, its outcome after."""

from __future__ import annotations

import io

from rich.console import Console

from promoter.cli.promote import PipelineDisplay
from promoter.engine.pipeline import PipelineEvent


def test_progress_on_a_terminal_names_each_step_and_its_outcome():
    display = PipelineDisplay(json_output=False)
    out = io.StringIO()
    display.err = Console(file=out, force_terminal=True, width=120, color_system=None)
    display.live = True
    display(PipelineEvent("start", {"pipeline_id": "p1", "phases": ["sit-promotion"], "resumed": False,
                                    "release": "v1.1.0", "artifact_sha256": "a" * 64}))
    display(PipelineEvent("step-start", {"key": "sit-promotion/deploy", "title": "Deploy", "action": "deploy",
                                         "why": "not run yet"}))
    assert display.status is not None  # the spinner runs while the step does
    display(PipelineEvent("note", {"message": "alias on version 1, 10 % on version 2"}))
    display(PipelineEvent("step-end", {"step_key": "sit-promotion/deploy", "status": "passed", "duration_s": 3.2,
                                       "detail": "succeeded"}))
    assert display.status is None
    display(PipelineEvent("end", {"pipeline_id": "p1", "outcome": "succeeded", "reason": "done",
                                  "evidence": {"archive": "/x/01.tar.gz"}}))
    text = out.getvalue()
    for line in ("pipeline p1: sit-promotion for v1.1.0 (sha256 aaaaaaaaaaaa)",
                 ">> sit-promotion/deploy: Deploy [deploy] (not run yet)", "alias on version 1, 10 % on version 2",
                 "sit-promotion/deploy: ok in 3.2s: succeeded", "pipeline p1: succeeded: done",
                 "evidence: /x/01.tar.gz"):
        assert line in text
