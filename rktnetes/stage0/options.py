"""The values pod and fetch options take, in a module of their own: the CLI's parser lists them
without importing the stage0 machinery that acts on them."""

from rktnetes.errors import UsageError

RESTART_POLICIES = ("never", "on-failure", "always")
PULL_POLICIES = ("new", "update", "never")

# rkt's --insecure-options values: those about fetching are honoured (all and all-fetch mean
# http and tls), the rest are accepted so that scripts written for rkt keep working.
INSECURE_OPTIONS = ("none", "image", "tls", "ondisk", "http", "pubkey", "capabilities", "paths",
                    "seccomp", "all-fetch", "all-run", "all")
INSECURE_HELP = ("comma list: http (allow plain-HTTP registries), tls (skip TLS certificate "
                 "checks), all-fetch (both), none (the default); rkt's other values (image, "
                 "ondisk, pubkey, capabilities, paths, seccomp, all-run, all) are accepted, "
                 "all meaning all-fetch")


def parse_insecure_options(values: list[str]) -> set[str]:
    """The options named in `values` (each a comma list), with all/all-fetch expanded to
    http and tls. UsageError for an unknown one."""
    out: set[str] = set()
    for v in values:
        for o in filter(None, (x.strip() for x in v.split(","))):
            if o not in INSECURE_OPTIONS:
                raise UsageError(f"--insecure-options: unknown option {o!r} "
                                 f"(known: {', '.join(INSECURE_OPTIONS)})")
            out.add(o)
    if out & {"all", "all-fetch"}:
        out |= {"http", "tls", "image"}
    return out
