"""The learner's commands: progress (no command), check, watch, reveal. None of them imports the sandbox."""
