"""Alerts a person acts on: one e-mail per grouped cause, per failing streak, per batch of new reconciliation
differences; once while open, again after resolved and reopened; daily digests for tenants and operators."""
