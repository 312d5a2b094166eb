"""A Dramatiq worker instance on the broker Redis; the tick a delayed message."""
