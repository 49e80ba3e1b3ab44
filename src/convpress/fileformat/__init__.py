"""File formats: a generic checksummed container, sparse index coding, and entropy coders."""
