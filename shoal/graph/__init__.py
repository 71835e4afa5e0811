"""Pure task-spec handling shared by whoever runs tasks (workers, local replays)."""
