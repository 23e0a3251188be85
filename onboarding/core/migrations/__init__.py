"""The versioned SQL migrations (NNNN_name.sql), applied in order by onboarding.core.db."""
