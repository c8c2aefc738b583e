"""Tests of the durable store: schema and migrations, secrets, credential rows, the log writer."""
