"""Helpers shared by the tests: the server subprocess helper and a test-only app."""
