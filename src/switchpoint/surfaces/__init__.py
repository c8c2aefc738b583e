"""Thin aiohttp handlers, one module per URL surface: parse, plan targets, hand over to the pipeline."""
