"""Patients: identity in the store, the grouped study list, the timeline, compare-with-prior and the
anonymised export. The pure parts (identity, scrubbing, key results, filters) live in
``inference.patients``; ``app.patients.store`` holds the schema step and the store's patient methods."""
