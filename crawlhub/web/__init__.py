"""What the two HTTP faces share — the API (`http/`) and the dashboard (`ui/`): request
parsing and validation, error replies, the API's schemas, live log streams and exports."""
