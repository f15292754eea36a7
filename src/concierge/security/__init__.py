"""Who may do what: API keys, end-user tokens, roles and scopes, tenants."""
