"""The HTTP application: app backend (/api), engine endpoints (/v1), static page (/)."""
