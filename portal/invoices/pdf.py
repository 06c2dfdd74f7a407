"""Invoice and statement PDFs (placeholder interface; replaced by the full renderer)."""
