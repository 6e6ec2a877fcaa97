"""Accord: service-level CRM."""
