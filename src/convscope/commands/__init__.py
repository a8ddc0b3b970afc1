"""Feature commands: each module here has ``register(app)`` adding its subcommands."""
