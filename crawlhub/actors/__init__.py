"""Dramatiq actors: thin, decode a message and call one domain function."""
