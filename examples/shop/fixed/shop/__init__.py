"""The same shop, fixed for several replicas (see examples/shop/README.md)."""
