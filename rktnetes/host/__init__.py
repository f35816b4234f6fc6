"""The ground floor: the host primitives every other package stands on (paths inside a root,
mounts, processes, cgroups, namespaces). Imports nothing from the rest of rktnetes."""
