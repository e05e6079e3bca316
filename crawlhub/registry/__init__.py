"""What users deploy: spiders, their immutable versions, and upload validation of archives."""
