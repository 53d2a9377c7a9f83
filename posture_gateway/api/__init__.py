"""The JSON APIs beside the protocols: admin, health, and the OpenAPI document of them all."""
