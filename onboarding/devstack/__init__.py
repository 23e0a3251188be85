"""`make up` (`python -m onboarding.devstack`): the whole platform on one machine, from wheels."""
