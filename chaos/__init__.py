"""How faults reach instances: the Platform protocol and its implementations, faults, nemesis."""
