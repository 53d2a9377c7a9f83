"""HR triggers: signed HR webhooks (BambooHR, and a generic JSON shape of ours) that start,
schedule or cancel a user's offboarding (docs/hr-triggers.md)."""
