"""Raw-format readers (one module per dataset), the preprocessed-data contract, and training datasets."""
