"""File readers, one module per modality (see inference.detect)."""
