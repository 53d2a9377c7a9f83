"""Server-rendered pages: Jinja templates (``templates/``), no external assets.

Templates are grouped per flow (``templates/oidc/`` for the login and device-check pages);
views render them through their blueprint, which points its template folder here.
"""
