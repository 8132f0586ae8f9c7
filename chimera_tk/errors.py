"""The exception tree of the whole package.

Only ``UserError`` messages are shown to a person as they are; anything else reaching the top is a
bug and is logged with its traceback. Protocol code distinguishes whose fault a failure was:
``LocalProtocolError`` (we broke the rules) and ``RemoteProtocolError`` (the peer did).
"""


class ChimeraError(Exception):
    """Root of every error Chimera raises on purpose."""


class UserError(ChimeraError):
    """Something the person can act on; the message is written for them and shown verbatim."""


class ConfigError(UserError):
    """config.toml or a command-line value is not acceptable."""


class ProfileLockedError(UserError):
    """Another Chimera process already has this profile open."""


class StoreError(UserError):
    """The profile's database cannot be used (newer, corrupt, or not Chimera's)."""


class InvalidTransition(ChimeraError):
    """A state machine was asked for a move its table does not allow: a bug in the caller."""


class LocalProtocolError(ChimeraError):
    """We tried to break a protocol's rules: a bug on our side."""


class RemoteProtocolError(ChimeraError):
    """The peer broke a protocol's rules: drop the connection, count it, keep serving."""
