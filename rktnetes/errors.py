"""Exception types. Each carries a one-line message the CLI prints as `rkt: <message>`."""


class RktError(Exception):
    """Base of every error the CLI reports without a traceback."""

    exit_code = 1


class HelpWanted(Exception):
    """-h/--help among the tokens a command parses itself (`rkt run`'s and `rkt app add`'s
    app flags): the CLI prints that command's help."""


class UsageError(RktError):
    """Bad flags or arguments."""

    exit_code = 2


class ReferenceError_(RktError):
    """An image reference that cannot be parsed."""


class RegistryError(RktError):
    """A registry was unreachable, refused, or answered something unusable."""


class AuthError(RegistryError):
    """Authentication with a registry failed."""


class NotFoundError(RktError):
    """An image, tag, pod or app that does not exist."""


class AmbiguousError(RktError):
    """A prefix or name that matches more than one thing."""


class DigestMismatch(RktError):
    """Content whose digest or size is not what was announced."""


class ManifestError(RktError):
    """A malformed or unsupported manifest, index or config."""


class UnsafeLayerError(RktError):
    """A layer tar entry that would write outside its target directory."""


class StoreError(RktError):
    """The image store is inconsistent or cannot be written."""


class PodError(RktError):
    """A pod cannot be created, run, stopped or removed."""


class StartInterrupted(PodError):
    """^C while a detached pod's monitor was starting it: the pod goes on without us."""

    exit_code = 130


class UnreadableManifest(PodError, ValueError):
    """A pod.json that does not parse (a ValueError too: readers that skip torn files as
    missing still do)."""


class Stage1Error(PodError):
    """The isolation flavor failed to start or control an app."""


class NetworkError(RktError):
    """A CNI network could not be set up or torn down."""
