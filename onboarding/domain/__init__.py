"""Pure rules and messages: models, registration numbers, OpenAPI, admission, keys, notices."""
