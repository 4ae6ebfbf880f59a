"""Keeping the workstation up: the Qt binding's self-check, crash evidence from the last session, and
the start-up notices that tell the user about either (without a modal box)."""
