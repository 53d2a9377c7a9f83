"""The Redis implementations of the core's shared interfaces: client, bus, caches, limits,
replay."""
