-- Verified identities (issue 12, docs/identity.md): the roster knows people by what the
-- operator's OIDC provider proves, not by a typed e-mail address.

-- Staff: the roster's staff id (their e-mail address, as in staff_roles, where roles and the
-- recipients of a team's notices stay) and the provider's identity for them, issuer + subject.
-- A staff member's decision counts only when sealed for the identity on file here.
CREATE TABLE staff_identities (
    staff_id    text NOT NULL CHECK (staff_id ~ '^[^@\s]+@[^@\s]+$'),
    issuer      text NOT NULL CHECK (issuer <> ''),
    subject     text NOT NULL CHECK (subject <> ''),
    enrolled_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (issuer, subject),
    -- One identity per person and provider: a second would be a second vote in four eyes.
    UNIQUE (issuer, staff_id)
);

-- Services (OAuth2 clients acting for themselves, e.g. the operator's developer portal) and the
-- organisations they may act for as the applicant. A service is never staff.
CREATE TABLE service_mandates (
    issuer      text NOT NULL CHECK (issuer <> ''),
    client_id   text NOT NULL CHECK (client_id <> ''),
    business_registration_number char(10) NOT NULL
                CHECK (business_registration_number ~ '^[0-9]{10}$'),
    granted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (issuer, client_id, business_registration_number)
);
