"""Sending notices by e-mail over SMTP."""
