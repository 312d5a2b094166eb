"""``make bench``: what the lab costs, and how it grows. See bench/README.md."""
