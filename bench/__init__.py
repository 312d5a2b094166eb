"""``make bench``: what the lab costs, and how it grows (issue 7). See bench/README.md."""
