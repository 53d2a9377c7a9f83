"""HTTP adapters of the MDM core: Flask blueprints for the device protocol."""
