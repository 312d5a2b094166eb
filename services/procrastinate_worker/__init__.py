"""A procrastinate worker instance; its periodic task is the tick."""
