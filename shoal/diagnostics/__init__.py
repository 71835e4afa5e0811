"""Diagnostics: the task stream, progress bars, task metadata (`distributed.diagnostics`)."""
