"""Exception types. Each carries a one-line message the CLI prints as `rkt: <message>`, and a
`kind` that a front end maps to its own codes (the CRI server to gRPC status codes, in one
place). A raise may give a kind of its own: `PodError("...", kind=FAILED_PRECONDITION)`, and a
`hint`: a key under which a front end may say, in its own words, what to do instead (the CLI
names its flags: "give one with --exec"), for messages that stay the engine's."""

# Kinds, named as gRPC names its status codes (what they mean is the same).
NOT_FOUND = "not-found"
ALREADY_EXISTS = "already-exists"
INVALID_ARGUMENT = "invalid-argument"
FAILED_PRECONDITION = "failed-precondition"  # the target is not in a state that allows it
UNAVAILABLE = "unavailable"                  # try again: busy, or a registry unreachable
DEADLINE_EXCEEDED = "deadline-exceeded"
PERMISSION_DENIED = "permission-denied"
RESOURCE_EXHAUSTED = "resource-exhausted"
INTERNAL = "internal"
UNIMPLEMENTED = "unimplemented"              # a feature this engine does not have


class RktError(Exception):
    """Base of every error the CLI reports without a traceback."""

    exit_code = 1
    kind = INTERNAL
    hint = ""

    def __init__(self, *args, kind: str = "", hint: str = ""):
        super().__init__(*args)
        if kind:
            self.kind = kind
        if hint:
            self.hint = hint


class HelpWanted(Exception):
    """-h/--help among the tokens a command parses itself (`rkt run`'s and `rkt app add`'s
    app flags): the CLI prints that command's help."""


class UsageError(RktError):
    """Bad flags or arguments."""

    kind = INVALID_ARGUMENT

    exit_code = 2


class ReferenceError_(RktError):
    """An image reference that cannot be parsed."""

    kind = INVALID_ARGUMENT


class RegistryError(RktError):
    """A registry was unreachable, refused, or answered something unusable."""

    kind = UNAVAILABLE


class AuthError(RegistryError):
    """Authentication with a registry failed."""

    kind = PERMISSION_DENIED


class NotFoundError(RktError):
    """An image, tag, pod or app that does not exist."""

    kind = NOT_FOUND


class AmbiguousError(RktError):
    """A prefix or name that matches more than one thing."""

    kind = INVALID_ARGUMENT


class DigestMismatch(RktError):
    """Content whose digest or size is not what was announced."""

    kind = INTERNAL


class ManifestError(RktError):
    """A malformed or unsupported manifest, index or config."""

    kind = INVALID_ARGUMENT


class UnsafeLayerError(RktError):
    """A layer tar entry that would write outside its target directory."""

    kind = INVALID_ARGUMENT


class StoreError(RktError):
    """The image store is inconsistent or cannot be written."""

    kind = INTERNAL


class PodError(RktError):
    """A pod cannot be created, run, stopped or removed."""

    kind = FAILED_PRECONDITION


class StartInterrupted(PodError):
    """^C while a detached pod's monitor was starting it: the pod goes on without us."""

    exit_code = 130


class UnreadableManifest(PodError, ValueError):
    """A pod.json that does not parse (a ValueError too: readers that skip torn files as
    missing still do)."""


class Stage1Error(PodError):
    """The isolation flavor failed to start or control an app."""

    kind = INTERNAL


class NetworkError(RktError):
    """A CNI network could not be set up or torn down."""

    kind = INTERNAL


class AlreadyExists(RktError):
    """A name already taken (an app of that name in the pod, say)."""

    kind = ALREADY_EXISTS


class NotRunning(PodError):
    """A pod or app that is not running, where running is asked for."""


class Busy(PodError):
    """Another command holds what is asked for; the same call may succeed a moment later."""

    kind = UNAVAILABLE


class TimedOut(PodError):
    """Something did not happen within the time it was given."""

    kind = DEADLINE_EXCEEDED

