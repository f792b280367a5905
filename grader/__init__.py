"""The workbook's grader: the manifest of stages and everything that reads it."""
