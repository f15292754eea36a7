"""Guardrails: what a conversation may and may not do, and the audit trail of every decision."""
