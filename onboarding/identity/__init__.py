"""Who took a decision, verified (issue 12; docs/identity.md says who is trusted for what).

- `tokens`: an OIDC access token from the operator's identity provider, verified (signature by
  a key of the provider's JWKS, algorithm allow-list, issuer, audience, times) into a
  `VerifiedIdentity`: a person, or a service (an OAuth2 client acting for itself).
- `attestation`: a component that verified the sender's token seals the decision (a JWS under
  a sealing key, binding the identity to the application, the decision and its content); the
  worker checks the seal with the public keys alone.
- `decisions`: the whole verification of a decision as the workflow's `verify_decision` local
  activity runs it: the seal, then the roster (roles on issuer + subject, applicant contacts by
  verified e-mail, services by the organisations they act for), then four eyes.
- `oidc`: the client side of OIDC (discovery, authorization code + PKCE, refresh, client
  credentials), for the codec server's sign-in, the reviewer CLI and programs.

`models` is pure, so workflow code may import it (the decision's verification runs in an
activity); `decisions` and `attestation` do no I/O and read no clock (times are passed in);
`tokens` and `oidc` talk to the provider.
"""
