"""The lab's experiments and what runs and judges them: model, runner, checker, reports, CLI."""
