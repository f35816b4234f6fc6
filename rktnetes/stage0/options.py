"""The values pod and fetch options take, in a module of their own: the CLI's parser lists them
without importing the stage0 machinery that acts on them."""

RESTART_POLICIES = ("never", "on-failure", "always")
PULL_POLICIES = ("new", "update", "never")
