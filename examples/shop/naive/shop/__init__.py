"""A small shop, written the way many first versions are (see examples/shop/README.md)."""
