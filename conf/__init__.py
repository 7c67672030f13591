"""Default configuration files (YAML) shipped with instructlake."""
