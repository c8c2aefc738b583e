"""Providers are records: where a provider lives, how it authenticates, which wire format it speaks."""
