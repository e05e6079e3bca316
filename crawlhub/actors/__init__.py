"""Dramatiq actors, declared on a process's broker by `Context.build`."""
