"""``scalelab probe``: the lab pointed at a user's own app, counting what it loses or runs twice.

The harness's side. ``spec`` is the probe as an experiment (its parameters, how it is
built, its verdict); ``requests`` reads the workload file; ``due`` turns the jobs the
user's schedulers announced into what was due; ``command`` is the CLI command and
``pytest_plugin`` the fixture. What runs inside the user's instances is
``services.probe``.
"""
