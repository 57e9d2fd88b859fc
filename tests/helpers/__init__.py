"""Builders and helpers shared by the tests of several stages."""
