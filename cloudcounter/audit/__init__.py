"""Post-event supervision: the hash-chained call timeline, daily digests, evidence
packages, sampling for review, checklists, findings and retention (docs/supervision.md)."""
