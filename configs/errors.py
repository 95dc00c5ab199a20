"""The project's error for mistakes a user can fix (config, command line, paths); imports nothing of the project,
so every package can raise it without importing the validator."""


class ConfigError(ValueError):
    """A mistake in the config or command line that the user can fix."""
