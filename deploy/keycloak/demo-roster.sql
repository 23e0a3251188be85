-- The demo roster for docker-compose.yml's Keycloak realm (deploy/keycloak/onboarding-realm.json):
-- the staff and their roles, enrolled under their Keycloak user ids (the realm file fixes them),
-- and the developer portal acting for the examples' organisations. Apply once, by hand:
--   docker compose exec -T postgresql psql -U onboarding openapi_onboarding < deploy/keycloak/demo-roster.sql
-- Re-running it changes nothing. tests/test_compose.py checks it against the realm file.
-- Rendered from onboarding/devstack/dev_seed.sql (the staff, as `make up` seeds them) and the
-- examples by `python -m onboarding.devstack.roster`: edit those, not this file.

INSERT INTO staff_roles (staff_id, role) VALUES
    ('reviewer@operator.example.com', 'pre_verification_reviewer'),
    ('sales@operator.example.com', 'market_data_sales'),
    ('platform@operator.example.com', 'platform_team'),
    ('approver@operator.example.com', 'final_approver'),
    ('manager@operator.example.com', 'operations_manager')
ON CONFLICT DO NOTHING;

INSERT INTO staff_identities (staff_id, issuer, subject) VALUES
    ('reviewer@operator.example.com', 'http://localhost:8180/realms/onboarding', 'f6c07e62-21a1-53eb-a986-345a0d76158b'),
    ('sales@operator.example.com', 'http://localhost:8180/realms/onboarding', '357b5544-a39c-5224-92d8-79fa60dd7bf4'),
    ('platform@operator.example.com', 'http://localhost:8180/realms/onboarding', '1f83e869-837b-52e6-bfb8-9b601e9d1e30'),
    ('approver@operator.example.com', 'http://localhost:8180/realms/onboarding', 'dc3d06f8-c243-521e-b6e2-494018c16999'),
    ('manager@operator.example.com', 'http://localhost:8180/realms/onboarding', '3ec6d885-9670-518e-a529-2dd9f5462d37')
ON CONFLICT DO NOTHING;

INSERT INTO service_mandates (issuer, client_id, business_registration_number) VALUES
    ('http://localhost:8180/realms/onboarding', 'developer-portal', '1248100998'),
    ('http://localhost:8180/realms/onboarding', 'developer-portal', '1348672683'),
    ('http://localhost:8180/realms/onboarding', 'developer-portal', '2148712348'),
    ('http://localhost:8180/realms/onboarding', 'developer-portal', '3168123455')
ON CONFLICT DO NOTHING;
