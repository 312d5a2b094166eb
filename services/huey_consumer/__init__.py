"""A Huey consumer instance (one worker thread and its scheduler); the tick its periodic task."""
