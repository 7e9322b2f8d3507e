"""mibench harness: registries, data model, runner, metrics and statistics."""
