"""fuzzkit subsystem plugin: struct_ops (SPEC R21-R27). Registrations are added with the plugin."""
