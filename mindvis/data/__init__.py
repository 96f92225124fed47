"""The preprocessed-data contract (what preprocessing writes and every stage reads), stimulus images, and the
training datasets over it (fMRI rows for Stage A, fMRI-image pairs for Stage B). The raw datasets' readers that
write the contract live in mindvis.preprocess."""
