"""Running the stage suites against a target: targets, the pytest runner and plugin, the fixtures, stored outputs.

Shared by the learner's and the instructor's commands; the sandbox is imported only when grading asks for it.
"""
