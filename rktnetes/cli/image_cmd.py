"""Placeholder until the module lands."""


def register(sub, common):
    pass
