"""How faults reach instances: the Platform protocol, its implementations, fault steps, the nemesis."""
