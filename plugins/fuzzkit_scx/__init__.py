"""fuzzkit subsystem plugin: scx (SPEC R21-R27). Registrations are added with the plugin."""
