"""Directory sources of the gateway: the local users file, import files, outside identities."""
