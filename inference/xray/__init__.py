"""Chest X-ray helpers: preprocessing, Grad-CAM heatmaps, symptom-text entities."""
