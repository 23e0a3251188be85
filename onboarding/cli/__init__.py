"""The reviewer's command line, `openapi-onboarding` (onboarding/cli/app.py)."""
