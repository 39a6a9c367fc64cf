"""The sparkpipe operator."""
