"""The onboarding platform, in folders by job (domain, core, store, mail, temporal, ...)."""
