"""The identity-provider contracts: Entra EAM, the Okta hook, the posture API, upstream
brokering."""
